package redisstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/internal/testserver"
)

// TestWritePathsAgree: the write script takes a shorter path for the common
// write (one field set, tags and expiry kept). Each case runs twice, once as
// that write and once with a removal of a tag the record does not have, which
// changes nothing but sends the write through the general path; both must
// report the same outcome and leave the same record (fields with whether each
// has the record's version, tags, expiry) and the same Redis TTL on its key.
func TestWritePathsAgree(t *testing.T) {
	r := testserver.StartRedis(t)
	ctx := t.Context()
	s, err := New(r.Client(), Options{Namespace: "paths"})
	if err != nil {
		t.Fatal(err)
	}
	// gone keeps an expired record in Redis for a millisecond only, so that
	// Redis itself removes it.
	gone, err := New(r.Client(), Options{Namespace: "paths-gone", ExpiredRetention: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	type outcome struct {
		err     string
		fields  string // name=value, then @cur when its version is the record's
		tags    string
		expires bool
		ttl     string // the Redis TTL of the record's key: none, kept or gone
	}
	classify := func(err error) string {
		switch {
		case err == nil:
			return "ok"
		case errors.Is(err, cache.ErrConflict):
			return "conflict"
		case errors.Is(err, cache.ErrNotFound):
			return "not found"
		}
		return err.Error()
	}
	set := func(name, value string) cache.FieldWrite { return cache.Set(name, []byte(value)) }
	update := func(value string) func(cache.Version) cache.Write {
		return func(cache.Version) cache.Write { return cache.Write{Fields: []cache.FieldWrite{set("f", value)}} }
	}
	create := func(value string) func(cache.Version) cache.Write {
		return func(cache.Version) cache.Write {
			return cache.Write{Create: true, Fields: []cache.FieldWrite{set("f", value)}}
		}
	}
	soon := time.Now().Add(time.Hour)
	const (
		short = 30 * time.Millisecond // a setup's expiry when it must pass
		past  = 60 * time.Millisecond // the wait after such a setup
	)
	for n, tc := range []struct {
		name  string
		store *Store        // nil: s
		setup []cache.Write // written before (on either path; tags or an expiry take the general one)
		ttl   time.Duration // when set, the setup writes expire this long after they are made
		wait  time.Duration // after setup
		write func(prev cache.Version) cache.Write
	}{
		{name: "create", write: create("new")},
		{name: "create over a live record", setup: []cache.Write{{Create: true, AddTags: []string{"u"}}}, write: create("new")},
		{name: "update of no record", write: update("new")},
		{name: "update", setup: []cache.Write{{Create: true, AddTags: []string{"u"}, Expires: soon, Fields: []cache.FieldWrite{set("f", "old"), set("g", "kept")}}}, write: update("new")},
		{name: "checked update", setup: []cache.Write{{Create: true, AddTags: []string{"u"}, Fields: []cache.FieldWrite{set("f", "old")}}}, write: func(v cache.Version) cache.Write {
			return cache.Write{Fields: []cache.FieldWrite{cache.SetIf("f", []byte("new"), v)}}
		}},
		{name: "checked update at another version", setup: []cache.Write{{Create: true, Fields: []cache.FieldWrite{set("f", "old")}}}, write: func(v cache.Version) cache.Write {
			return cache.Write{Fields: []cache.FieldWrite{cache.SetIf("f", []byte("new"), v-1)}}
		}},
		{name: "checked add of an absent field", setup: []cache.Write{{Create: true, Fields: []cache.FieldWrite{set("g", "x")}}}, write: func(cache.Version) cache.Write {
			return cache.Write{Fields: []cache.FieldWrite{cache.SetIf("f", []byte("new"), 0)}}
		}},
		{name: "checked add of a present field", setup: []cache.Write{{Create: true, Fields: []cache.FieldWrite{set("f", "old")}}}, write: func(cache.Version) cache.Write {
			return cache.Write{Fields: []cache.FieldWrite{cache.SetIf("f", []byte("new"), 0)}}
		}},
		{name: "update of an expired record", setup: []cache.Write{{Create: true, AddTags: []string{"u"}, Fields: []cache.FieldWrite{set("f", "old")}}}, ttl: short, wait: past, write: update("new")},
		{name: "create over an expired record", setup: []cache.Write{{Create: true, AddTags: []string{"u"}, Fields: []cache.FieldWrite{set("g", "old")}}}, ttl: short, wait: past, write: create("new")},
		{name: "checked create over an expired record that had the field", setup: []cache.Write{{Create: true, AddTags: []string{"u"}, Fields: []cache.FieldWrite{set("f", "old")}}}, ttl: short, wait: past, write: func(cache.Version) cache.Write {
			return cache.Write{Create: true, Fields: []cache.FieldWrite{cache.SetIf("f", []byte("new"), 0)}}
		}},
		{name: "checked update of an expired record at its version", setup: []cache.Write{{Create: true, AddTags: []string{"u"}, Fields: []cache.FieldWrite{set("f", "old")}}}, ttl: short, wait: past, write: func(v cache.Version) cache.Write {
			return cache.Write{Fields: []cache.FieldWrite{cache.SetIf("f", []byte("new"), v)}}
		}},
		{name: "create over a record gone by its Redis TTL", store: gone, setup: []cache.Write{{Create: true, AddTags: []string{"u"}, Fields: []cache.FieldWrite{set("f", "old"), set("g", "old")}}}, ttl: short, wait: past, write: create("new")},
		{name: "update of a record gone by its Redis TTL", store: gone, setup: []cache.Write{{Create: true, AddTags: []string{"u"}, Fields: []cache.FieldWrite{set("f", "old")}}}, ttl: short, wait: past, write: update("new")},
		{name: "checked update keeps the Redis TTL", setup: []cache.Write{{Create: true, AddTags: []string{"u"}, Expires: soon, Fields: []cache.FieldWrite{set("f", "old"), set("g", "kept")}}}, write: func(v cache.Version) cache.Write {
			return cache.Write{Fields: []cache.FieldWrite{cache.SetIf("f", nil, v)}}
		}},
		{name: "update after expiry none", setup: []cache.Write{{Create: true, AddTags: []string{"u"}, Expires: soon, Fields: []cache.FieldWrite{set("f", "old")}}, {Expires: cache.NoExpiry, Fields: []cache.FieldWrite{set("f", "older")}}}, write: func(v cache.Version) cache.Write {
			return cache.Write{Fields: []cache.FieldWrite{cache.SetIf("f", []byte("12345678901234567890"), v)}}
		}},
		{name: "create of an empty value", write: create("")},
		{name: "update to an empty value", setup: []cache.Write{{Create: true, Fields: []cache.FieldWrite{set("f", "old")}}}, write: update("")},
		{name: "update to 1e999", setup: []cache.Write{{Create: true, Fields: []cache.FieldWrite{set("f", "old")}}}, write: update("1e999")},
		{name: "update to -0", setup: []cache.Write{{Create: true, Fields: []cache.FieldWrite{set("f", "old")}}}, write: update("-0")},
		{name: "create of 0x10", write: create("0x10")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := tc.store
			if st == nil {
				st = s
			}
			var got [2]outcome
			for i, general := range []bool{false, true} {
				key := fmt.Sprintf("case%d-%v", n, general)
				var prev cache.Version
				for _, w := range tc.setup {
					if tc.ttl > 0 {
						w.Expires = time.Now().Add(tc.ttl)
					}
					if prev, err = st.Write(ctx, key, w); err != nil {
						t.Fatal(err)
					}
				}
				time.Sleep(tc.wait)
				w := tc.write(prev)
				if general {
					w.RemoveTags = []string{"absent"}
				}
				v, err := st.Write(ctx, key, w)
				o := outcome{err: classify(err)}
				if err == nil && v <= prev {
					t.Errorf("general path %v: version %d after %d", general, v, prev)
				}
				rec, rerr := st.Read(ctx, key)
				switch {
				case errors.Is(rerr, cache.ErrNotFound):
				case rerr != nil:
					t.Fatal(rerr)
				default:
					for _, f := range rec.Fields {
						o.fields += fmt.Sprintf("%s=%q", f.Name, f.Value)
						if f.Version == rec.Version {
							o.fields += "@cur"
						}
						o.fields += " "
					}
					o.tags, o.expires = strings.Join(rec.Tags, ","), !rec.Expires.IsZero()
					if err == nil && rec.Version != v {
						t.Errorf("general path %v: read version %d, written %d", general, rec.Version, v)
					}
				}
				ttl, err := r.Client().PTTL(ctx, st.recordKey(key)).Result()
				switch {
				case err != nil:
					t.Fatal(err)
				case ttl == -2:
					o.ttl = "gone"
				case ttl == -1:
					o.ttl = "none"
				default:
					o.ttl = "kept"
				}
				got[i] = o
			}
			if got[0] != got[1] {
				t.Fatalf("the common write: %+v; through the general path: %+v", got[0], got[1])
			}
		})
	}

	// A common write sent again (a lost reply) reports the first run's version.
	v1, err := s.Write(ctx, "replayed", cache.Write{Create: true, Fields: []cache.FieldWrite{cache.Set("f", []byte("1"))}})
	if err != nil {
		t.Fatal(err)
	}
	w := cache.Write{Fields: []cache.FieldWrite{cache.SetIf("f", []byte("2"), v1)}}
	var versions []any
	for range 2 {
		calls, script := s.writeCalls("replayed", w, time.Now(), "same-id")
		if _, err := s.run(ctx, calls, true); err != nil {
			t.Fatal(err)
		}
		rep, err := script.cmd.Slice()
		if err != nil || rep[0] != int64(writeOK) {
			t.Fatalf("run of a write sent again: %v, %v", rep, err)
		}
		versions = append(versions, rep[1])
	}
	if versions[0] != versions[1] {
		t.Fatalf("the write sent again got version %v, the first %v", versions[1], versions[0])
	}
}

// splitFastPath cuts the write script's source src in three: what comes before
// its fast path, the fast path (one top-level if block) and the general path. It
// fails the test when the block is not found where expected, so that a change of
// the script's shape breaks the tests comparing the paths instead of leaving
// them comparing a script with itself.
func splitFastPath(t *testing.T, src string) (head, fast, general string) {
	t.Helper()
	const (
		start = "\nif ARGV[8] == '1' and ARGV[9] == 's' and ARGV[4] == '' and ARGV[6] == '' and ARGV[7] == '' then\n"
		end   = "\nend\n"             // the block's end, the first line "end" after its start
		next  = "local k = KEYS[1]\n" // the general path's first line
	)
	i := strings.Index(src, start)
	if i < 0 || strings.Count(src, start) != 1 {
		t.Fatalf("the write script has no single fast-path block starting %q: update splitFastPath", start)
	}
	j := strings.Index(src[i+1:], end)
	if j < 0 || !strings.HasPrefix(src[i+1+j+len(end):], next) {
		t.Fatalf("the write script's fast-path block is not followed by %q: update splitFastPath", next)
	}
	j += i + 1 + len(end)
	return src[:i+1], src[i+1 : j], src[j:]
}

// TestWritePathsRaw runs the write script, a copy of it without its fast path
// (cut from the script's source) and a copy with its fast path only, with the
// same arguments and the caller's time given explicitly, each on its own copy
// of a raw record hash written with HSET. For every state and common write the
// fast path must take the write, and the script and the general path must give
// the same reply and leave the same hash (every field with its version prefix,
// the internal fields), the same Redis TTL, and a record version that grew or
// not alike. Versions the scripts made are compared as "new".
func TestWritePathsRaw(t *testing.T) {
	r := testserver.StartRedis(t)
	ctx := t.Context()
	c := r.Client()
	head, fast, general := splitFastPath(t, writeScript)
	scripts := []*redis.Script{
		redis.NewScript(luaHelpers + writeScript),
		redis.NewScript(luaHelpers + head + general),
		redis.NewScript(luaHelpers + head + fast + "return {0}\n"), // {0}: the fast path passed the write on
	}
	for i, sc := range scripts {
		if err := sc.Load(ctx, c).Err(); err != nil {
			t.Fatalf("script %d: %v", i, err)
		}
	}
	tm, err := c.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	// now is the caller's time given to the script, which decides expiry; the
	// versions are set far from the server's clock, which makes new ones.
	now := tm.UnixMilli()
	v0 := uint64(tm.UnixMicro()) - uint64(time.Hour/time.Microsecond)
	ahead := uint64(tm.UnixMicro()) + uint64(240*time.Hour/time.Microsecond)
	const (
		id        = "wid"
		retention = int64(time.Hour / time.Millisecond)
	)
	stored := func(v uint64, value string) string {
		return string(binary.BigEndian.AppendUint64(nil, v)) + value
	}
	// record is a live record at version v: f written last, g kept from an
	// earlier write, a tag and another write's id; extra pairs are added or
	// replace those.
	record := func(v uint64, extra ...string) map[string]string {
		m := map[string]string{
			"#v": strconv.FormatUint(v, 10), "#w": "w-old", "#t": "u",
			"f": stored(v, "old"), "g": stored(v-1000, "kept"),
		}
		for i := 0; i < len(extra); i += 2 {
			m[extra[i]] = extra[i+1]
		}
		return m
	}
	ms := func(t int64) string { return strconv.FormatInt(t, 10) }
	hour := int64(time.Hour / time.Millisecond)
	states := []struct {
		name string
		hash map[string]string // nil: no record
		ttl  time.Duration     // the key's Redis TTL, when set
	}{
		{name: "no record"},
		{name: "live", hash: record(v0)},
		{name: "live with an expiry", hash: record(v0, "#e", ms(now+hour)), ttl: 2 * time.Hour},
		{name: "expired, key kept", hash: record(v0, "#e", ms(now-hour)), ttl: time.Hour},
		{name: "expiry equal to now", hash: record(v0, "#e", ms(now)), ttl: time.Hour},
		{name: "version ahead of the clock", hash: record(ahead, "g", stored(v0, "kept"))},
		{name: "field shorter than its version prefix", hash: record(v0, "f", "short")},
		{name: "write id stored", hash: record(v0, "#w", id)},
		{name: "write id stored, expired", hash: record(v0, "#w", id, "#e", ms(now-hour)), ttl: time.Hour},
		{name: "version only", hash: map[string]string{"#v": strconv.FormatUint(v0, 10)}},
	}
	type write struct {
		create bool
		check  bool
		expect uint64
		name   string
		value  string
	}
	type outcome struct {
		reply, hash, ttl string
		grew             bool
	}
	// observe turns what a script left into an outcome; pre is the record's
	// version before it ran.
	observe := func(rep *redis.Cmd, hash map[string]string, ttl time.Duration, pre uint64) outcome {
		var o outcome
		post, _ := strconv.ParseUint(hash["#v"], 10, 64)
		o.grew = post > pre
		norm := func(v string) string {
			if o.grew && v == hash["#v"] {
				return "new"
			}
			return v
		}
		if vals, err := rep.Slice(); err != nil {
			o.reply = "error " + err.Error()
		} else {
			for _, v := range vals {
				if s, ok := v.(string); ok {
					v = norm(s)
				}
				o.reply += fmt.Sprint(v) + " "
			}
		}
		for _, k := range slices.Sorted(maps.Keys(hash)) {
			v := hash[k]
			switch {
			case k == "#v":
				v = norm(v)
			case strings.HasPrefix(k, "#"):
			case len(v) < versionLen:
				v = fmt.Sprintf("unprefixed %q", v)
			default:
				v = fmt.Sprintf("%s %q", norm(strconv.FormatUint(binary.BigEndian.Uint64([]byte(v)), 10)), v[versionLen:])
			}
			o.hash += k + "=" + v + " "
		}
		switch {
		case ttl == -2:
			o.ttl = "gone"
		case ttl == -1:
			o.ttl = "none"
		default:
			o.ttl = ttl.Round(time.Minute).String()
		}
		return o
	}
	for si, st := range states {
		t.Run(st.name, func(t *testing.T) {
			pre, _ := strconv.ParseUint(st.hash["#v"], 10, 64)
			var writes []write
			for _, create := range []bool{false, true} {
				for _, value := range []string{"new", "", "123", "1e999", "-0"} {
					writes = append(writes, write{create: create, name: "f", value: value})
					for _, name := range []string{"f", "g", "h"} {
						cur := uint64(0)
						if s := st.hash[name]; len(s) >= versionLen {
							cur = binary.BigEndian.Uint64([]byte(s))
						}
						expects := []uint64{0, cur, math.MaxUint64}
						if cur > 0 {
							expects = append(expects, cur-1)
						}
						slices.Sort(expects)
						for _, e := range slices.Compact(expects) {
							writes = append(writes, write{create: create, check: true, expect: e, name: name, value: value})
						}
					}
				}
			}
			type run struct {
				key  string
				rep  *redis.Cmd
				hash *redis.MapStringStringCmd
				ttl  *redis.DurationCmd
			}
			runs := make([][]run, len(writes))
			p := c.Pipeline()
			for wi, w := range writes {
				for i, sc := range scripts {
					key := fmt.Sprintf("raw:%d:%d:%d", si, wi, i)
					if st.hash != nil {
						p.HSet(ctx, key, st.hash)
					}
					if st.ttl > 0 {
						p.PExpire(ctx, key, st.ttl)
					}
					rep := sc.EvalSha(ctx, p, []string{key}, id, now, boolArg(w.create), "", retention, "", "", 1,
						"s", boolArg(w.check), w.expect, w.name, w.value)
					runs[wi] = append(runs[wi], run{key: key, rep: rep, hash: p.HGetAll(ctx, key), ttl: p.PTTL(ctx, key)})
				}
			}
			if _, err := p.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
				// A script's error reply is compared below; any other error stops the test.
				for _, rs := range runs {
					for _, x := range rs {
						if x.hash.Err() != nil || x.ttl.Err() != nil {
							t.Fatal(err)
						}
					}
				}
			}
			failures := 0
			for wi, w := range writes {
				var got []outcome
				for i, x := range runs[wi] {
					got = append(got, observe(x.rep, x.hash.Val(), x.ttl.Val(), pre))
					if i == 2 && x.rep.Err() == nil && got[i].reply == "0 " {
						t.Fatalf("%+v: the fast path passed a common write on to the general path", w)
					}
				}
				if got[0] != got[1] {
					if failures++; failures <= 5 {
						t.Errorf("%+v:\nthe script:       %+v\nthe general path: %+v", w, got[0], got[1])
					}
				}
			}
			if failures > 5 {
				t.Errorf("and %d more writes whose paths disagree", failures-5)
			}
			keys := make([]string, 0, len(runs)*len(scripts))
			for _, rs := range runs {
				for _, x := range rs {
					keys = append(keys, x.key)
				}
			}
			if err := c.Del(ctx, keys...).Err(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestWritePathsCrossReplay: a write sent again after a lost reply may take the
// other path than its first run (here: the same write id, once as the common
// write and once with a tag removal that sends it through the general path, in
// both orders). The second run must report the first run's reply and change
// nothing: the record keeps the first run's value and version.
func TestWritePathsCrossReplay(t *testing.T) {
	r := testserver.StartRedis(t)
	ctx := t.Context()
	s, err := New(r.Client(), Options{Namespace: "cross"})
	if err != nil {
		t.Fatal(err)
	}
	for n, tc := range []struct {
		name  string
		setup bool // create the record (f = "old") first
		write func(prev cache.Version, value string) cache.Write
	}{
		{"checked update", true, func(prev cache.Version, value string) cache.Write {
			return cache.Write{Fields: []cache.FieldWrite{cache.SetIf("f", []byte(value), prev)}}
		}},
		{"checked create", false, func(_ cache.Version, value string) cache.Write {
			return cache.Write{Create: true, Fields: []cache.FieldWrite{cache.SetIf("f", []byte(value), 0)}}
		}},
	} {
		for _, generalFirst := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s, general path first %v", tc.name, generalFirst), func(t *testing.T) {
				key := fmt.Sprintf("case%d-%v", n, generalFirst)
				var prev cache.Version
				if tc.setup {
					if prev, err = s.Write(ctx, key, cache.Write{Create: true, Fields: []cache.FieldWrite{cache.Set("f", []byte("old"))}}); err != nil {
						t.Fatal(err)
					}
				}
				send := func(general bool, value string) []any {
					t.Helper()
					w := tc.write(prev, value)
					if general {
						w.RemoveTags = []string{"absent"}
					}
					calls, script := s.writeCalls(key, w, time.Now(), "cross-id")
					if _, err := s.run(ctx, calls, true); err != nil {
						t.Fatal(err)
					}
					rep, err := script.cmd.Slice()
					if err != nil {
						t.Fatal(err)
					}
					return rep
				}
				first := send(generalFirst, "first")
				if len(first) != 2 || first[0] != int64(writeOK) {
					t.Fatalf("first run: %v, want success", first)
				}
				// The replay carries another value, which it must not write.
				if again := send(!generalFirst, "replayed"); !slices.Equal(first, again) {
					t.Fatalf("the write sent again on the other path got %v, the first run %v", again, first)
				}
				rec, err := s.Read(ctx, key)
				if err != nil {
					t.Fatal(err)
				}
				if v := strconv.FormatUint(uint64(rec.Version), 10); v != first[1] || len(rec.Fields) != 1 ||
					string(rec.Fields[0].Value) != "first" || rec.Fields[0].Version != rec.Version {
					t.Fatalf("after the replay: %+v; want f = first at version %v", rec, first[1])
				}
			})
		}
	}
}

package redisstore

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/internal/testserver"
)

// TestWritePathsAgree: the write script takes a shorter path for the common
// write (one field set, tags and expiry kept). Each case runs twice, once as
// that write and once with a removal of a tag the record does not have, which
// changes nothing but sends the write through the general path; both must
// report the same outcome and leave the same record.
func TestWritePathsAgree(t *testing.T) {
	r := testserver.StartRedis(t)
	ctx := t.Context()
	s, err := New(r.Client(), Options{Namespace: "paths"})
	if err != nil {
		t.Fatal(err)
	}
	type outcome struct {
		err     string
		fields  string
		tags    []string
		expires bool
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
	soon := time.Now().Add(time.Hour)
	for n, tc := range []struct {
		name  string
		setup []cache.Write // written before, on the general path (tags, expiry)
		ttl   time.Duration // when set, the setup writes expire this long after they are made
		wait  time.Duration // after setup
		write func(prev cache.Version) cache.Write
	}{
		{"create", nil, 0, 0, func(cache.Version) cache.Write {
			return cache.Write{Create: true, Fields: []cache.FieldWrite{cache.Set("f", []byte("new"))}}
		}},
		{"create over a live record", []cache.Write{{Create: true, AddTags: []string{"u"}}}, 0, 0, func(cache.Version) cache.Write {
			return cache.Write{Create: true, Fields: []cache.FieldWrite{cache.Set("f", []byte("new"))}}
		}},
		{"update of no record", nil, 0, 0, func(cache.Version) cache.Write {
			return cache.Write{Fields: []cache.FieldWrite{cache.Set("f", []byte("new"))}}
		}},
		{"update", []cache.Write{{Create: true, AddTags: []string{"u"}, Expires: soon, Fields: []cache.FieldWrite{cache.Set("f", []byte("old")), cache.Set("g", []byte("kept"))}}}, 0, 0, func(cache.Version) cache.Write {
			return cache.Write{Fields: []cache.FieldWrite{cache.Set("f", []byte("new"))}}
		}},
		{"checked update", []cache.Write{{Create: true, AddTags: []string{"u"}, Fields: []cache.FieldWrite{cache.Set("f", []byte("old"))}}}, 0, 0, func(v cache.Version) cache.Write {
			return cache.Write{Fields: []cache.FieldWrite{cache.SetIf("f", []byte("new"), v)}}
		}},
		{"checked update at another version", []cache.Write{{Create: true, Fields: []cache.FieldWrite{cache.Set("f", []byte("old"))}}}, 0, 0, func(v cache.Version) cache.Write {
			return cache.Write{Fields: []cache.FieldWrite{cache.SetIf("f", []byte("new"), v-1)}}
		}},
		{"checked add of an absent field", []cache.Write{{Create: true, Fields: []cache.FieldWrite{cache.Set("g", []byte("x"))}}}, 0, 0, func(cache.Version) cache.Write {
			return cache.Write{Fields: []cache.FieldWrite{cache.SetIf("f", []byte("new"), 0)}}
		}},
		{"checked add of a present field", []cache.Write{{Create: true, Fields: []cache.FieldWrite{cache.Set("f", []byte("old"))}}}, 0, 0, func(cache.Version) cache.Write {
			return cache.Write{Fields: []cache.FieldWrite{cache.SetIf("f", []byte("new"), 0)}}
		}},
		{"update of an expired record", []cache.Write{{Create: true, AddTags: []string{"u"}, Fields: []cache.FieldWrite{cache.Set("f", []byte("old"))}}}, 30 * time.Millisecond, 60 * time.Millisecond, func(cache.Version) cache.Write {
			return cache.Write{Fields: []cache.FieldWrite{cache.Set("f", []byte("new"))}}
		}},
		{"create over an expired record", []cache.Write{{Create: true, AddTags: []string{"u"}, Fields: []cache.FieldWrite{cache.Set("g", []byte("old"))}}}, 30 * time.Millisecond, 60 * time.Millisecond, func(cache.Version) cache.Write {
			return cache.Write{Create: true, Fields: []cache.FieldWrite{cache.Set("f", []byte("new"))}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got [2]outcome
			for i, general := range []bool{false, true} {
				key := fmt.Sprintf("case%d-%v", n, general)
				var prev cache.Version
				for _, w := range tc.setup {
					if tc.ttl > 0 {
						w.Expires = time.Now().Add(tc.ttl)
					}
					if prev, err = s.Write(ctx, key, w); err != nil {
						t.Fatal(err)
					}
				}
				time.Sleep(tc.wait)
				w := tc.write(prev)
				if general {
					w.RemoveTags = []string{"absent"}
				}
				v, err := s.Write(ctx, key, w)
				o := outcome{err: classify(err)}
				if err == nil && v <= prev {
					t.Errorf("general path %v: version %d after %d", general, v, prev)
				}
				rec, rerr := s.Read(ctx, key)
				switch {
				case errors.Is(rerr, cache.ErrNotFound):
				case rerr != nil:
					t.Fatal(rerr)
				default:
					for _, f := range rec.Fields {
						o.fields += f.Name + "=" + string(f.Value) + " "
					}
					o.tags, o.expires = rec.Tags, !rec.Expires.IsZero()
					if err == nil && rec.Version != v {
						t.Errorf("general path %v: read version %d, written %d", general, rec.Version, v)
					}
				}
				got[i] = o
			}
			if got[0].err != got[1].err || got[0].fields != got[1].fields || !slices.Equal(got[0].tags, got[1].tags) || got[0].expires != got[1].expires {
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

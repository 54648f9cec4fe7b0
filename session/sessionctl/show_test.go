package sessionctl_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/fxsession/fxsession/cache/memstore"
	"github.com/fxsession/fxsession/session"
	"github.com/fxsession/fxsession/session/sessionctl"
)

// thing is a program's own type, stored as an extension field.
type thing struct {
	Name  string `msgpack:"name" json:"name"`
	Count int    `msgpack:"count" json:"count"`
}

// twoManagers are an application's manager (with the bag "prefs") and an admin
// tool's manager (without) on one store.
func twoManagers(t *testing.T, clk *clock) (appM, adminM *session.Manager) {
	t.Helper()
	store := memstore.New(memstore.Options{Now: clk.Now}) // expiry on the sessions' clock
	t.Cleanup(func() { _ = store.Close() })
	cfg := session.Config{Now: clk.Now, GCInterval: session.Never, Logger: slog.New(slog.DiscardHandler)}
	appM, err := session.New(store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := appM.RegisterBag("prefs"); err != nil {
		t.Fatal(err)
	}
	adminM, err = session.New(store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return appM, adminM
}

// richSession stores one value of every kind.
func richSession(t *testing.T, m *session.Manager) (id string) {
	t.Helper()
	ctx, s := m.NewContext(t.Context(), "")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.Start(ctx))
	must(s.Put(ctx, "user", "alice"))
	must(s.Put(ctx, "note", "xyz"))    // no decoder: hex
	must(s.Put(ctx, "broken", "text")) // its decoder expects an int
	must(s.Flashes().Add(ctx, "success", "Saved <everything>"))
	b, err := s.Bag("prefs")
	must(err)
	must(b.Set(ctx, "theme", "dark"))
	enc, err := msgpack.Marshal(thing{Name: "kettle", Count: 2})
	must(err)
	must(session.ExtensionOf(s).StageField(ctx, "scope:thing", enc))
	must(s.AddTag(ctx, "user:alice"))
	must(s.Commit(ctx))
	id, err = s.ID(ctx)
	must(err)
	return id
}

var decoders = []sessionctl.Decoder{
	sessionctl.PutValue[string]("user"),
	sessionctl.PutValue[int]("broken"),
	sessionctl.Object("scope:thing", func(_ context.Context, data session.Value) (any, error) {
		var th thing
		err := data.Decode(&th)
		return th, err
	}),
}

// TestShowValues: show prints the metadata and every stored value: decoded as
// JSON where a decoder knows the type (and flashes always), the msgpack in hex
// otherwise, and changes nothing (the flash message is still there).
func TestShowValues(t *testing.T) {
	clk := newClock()
	appM, adminM := twoManagers(t, clk)
	id := richSession(t, appM)
	clk.Add(5 * time.Second)

	out := mustRunWith(t, adminM, sessionctl.Output{Decoders: decoders}, "show", id)
	for _, want := range []string{
		"created:        " + clk.Now().Add(-5*time.Second).Local().Format(time.RFC3339) + "\n",
		"last activity:  " + clk.Now().Add(-5*time.Second).Local().Format(time.RFC3339) + " (",
		"cookie:         until the browser closes\n",
		"tags:           user:alice\n",
		"  v:user  6 B\n    \"alice\"\n",
		"  v:note  4 B\n    msgpack: a378797a\n",
		"  v:broken  5 B\n    (does not decode as its type: ",
		"    msgpack: a474657874\n",
		"  b:prefs theme  5 B\n    msgpack: a46461726b\n",
		"  e:scope:thing  ",
		"    {\n      \"name\": \"kettle\",\n      \"count\": 2\n    }\n",
		"  f  ",
		"    {\n      \"success\": [\n        \"Saved <everything>\"\n      ]\n    }\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, id[session.RefLength:]) {
		t.Error("show printed the session ID's secret part")
	}

	// Without decoders, only the flashes are decoded.
	plain := mustRunWith(t, adminM, sessionctl.Output{}, "show", id)
	if !strings.Contains(plain, "  v:user  6 B\n    msgpack: a5616c696365\n") || !strings.Contains(plain, `"Saved <everything>"`) {
		t.Errorf("show without decoders:\n%s", plain)
	}

	// Nothing was consumed or written: the flash is still there for the visitor.
	ctx, s := appM.NewContext(t.Context(), id)
	flashes, err := s.Flashes().Get(ctx, "success")
	if err != nil || len(flashes) != 1 {
		t.Errorf("the flash after show: %q, %v", flashes, err)
	}
	last, err := s.LastActivity(ctx)
	if err != nil || !last.Equal(clk.Now().Add(-5*time.Second)) {
		t.Errorf("show touched the session: last activity %v, %v", last, err)
	}
}

// showJSON is the JSON of show -json.
type showJSON struct {
	Ref             string   `json:"ref"`
	Created         string   `json:"created"`
	LastUsed        string   `json:"last_used"`
	Expires         *string  `json:"expires"`
	LifetimeSeconds int64    `json:"lifetime_seconds"`
	Tags            []string `json:"tags"`
	Device          string   `json:"device"`
	Address         string   `json:"address"`
	Size            int      `json:"size"`
	Values          []struct {
		Key     string          `json:"key"`
		Kind    string          `json:"kind"`
		Name    string          `json:"name"`
		Field   string          `json:"field"`
		Size    int             `json:"size"`
		JSON    json.RawMessage `json:"json"`
		Msgpack string          `json:"msgpack"`
		Note    string          `json:"note"`
	} `json:"values"`
}

func TestShowJSON(t *testing.T) {
	clk := newClock()
	appM, adminM := twoManagers(t, clk)
	id := richSession(t, appM)
	out := mustRunWith(t, adminM, sessionctl.Output{Decoders: decoders, JSON: true}, "show", id)
	var got showJSON
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("show -json is not the documented JSON: %v\n%s", err, out)
	}
	if got.Ref != id[:session.RefLength] || got.Tags[0] != "user:alice" || got.Expires == nil || got.LifetimeSeconds != 0 || got.Size == 0 {
		t.Errorf("show -json metadata: %+v", got)
	}
	for name, s := range map[string]string{"created": got.Created, "last_used": got.LastUsed, "expires": *got.Expires} {
		tm, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Errorf("%s %q is not RFC 3339: %v", name, s, err)
		}
		if name == "created" && !tm.Equal(clk.Now()) {
			t.Errorf("created %v, want %v", tm, clk.Now())
		}
	}
	byKey := map[string]string{}
	for _, v := range got.Values {
		k := v.Key + " " + v.Field
		switch {
		case v.JSON != nil:
			var c bytes.Buffer
			if err := json.Compact(&c, v.JSON); err != nil {
				t.Fatal(err)
			}
			byKey[k] = v.Kind + " json " + c.String()
		default:
			byKey[k] = v.Kind + " hex " + v.Msgpack + " " + v.Note
		}
	}
	for k, want := range map[string]string{
		"v:user ":        `value json "alice"`,
		"v:note ":        "value hex a378797a ",
		"b:prefs theme":  "bag hex a46461726b ",
		"e:scope:thing ": `object json {"name":"kettle","count":2}`,
		"f ":             `flashes json {"success":["Saved <everything>"]}`,
	} {
		if byKey[k] != want {
			t.Errorf("value %q = %q, want %q", k, byKey[k], want)
		}
	}
	if v := byKey["v:broken "]; !strings.HasPrefix(v, "value hex a474657874 does not decode as its type") {
		t.Errorf("a value its decoder refuses: %q", v)
	}
}

// listJSON is one session in list -json.
type listJSON struct {
	Ref             string   `json:"ref"`
	Created         string   `json:"created"`
	LastUsed        string   `json:"last_used"`
	Expires         *string  `json:"expires"`
	LifetimeSeconds int64    `json:"lifetime_seconds"`
	Tags            []string `json:"tags"`
	Device          string   `json:"device"`
	Address         string   `json:"address"`
	Size            int      `json:"size"`
}

func TestListJSON(t *testing.T) {
	clk := newClock()
	m := manager(t, session.Config{Now: clk.Now, GCInterval: session.Never, InactivityTimeout: time.Hour})
	if out := mustRunWith(t, m, sessionctl.Output{JSON: true}, "list"); out != "[]\n" {
		t.Errorf("list -json of no session = %q", out)
	}
	_, alice := newSession(t, m, 3000, "user:alice")
	clk.Add(time.Minute)
	_, anon := newSession(t, m, 0)
	out := mustRunWith(t, m, sessionctl.Output{JSON: true}, "list")
	var got []listJSON
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil || len(got) != 2 {
		t.Fatalf("list -json: %v\n%s", err, out)
	}
	rows := map[string]listJSON{}
	for _, r := range got {
		rows[r.Ref] = r
	}
	a, b := rows[alice], rows[anon]
	start := clk.Now().Add(-time.Minute)
	if a.Created != start.Local().Format(time.RFC3339) || a.LastUsed != a.Created || a.Expires == nil ||
		*a.Expires != start.Add(time.Hour).Local().Format(time.RFC3339) || len(a.Tags) != 1 || a.Size < 3000 {
		t.Errorf("alice's session: %+v", a)
	}
	if b.Tags == nil || len(b.Tags) != 0 || b.Created != clk.Now().Local().Format(time.RFC3339) {
		t.Errorf("the anonymous session: %+v (tags must be [], not null)", b)
	}
	if !regexp.MustCompile(`^\[\n\{.*\},\n\{.*\}\n\]\n$`).MatchString(out) {
		t.Errorf("list -json is not one session a line:\n%s", out)
	}
}

// TestTextTimes: list and show print RFC 3339 times with their zone.
func TestTextTimes(t *testing.T) {
	m := manager(t, session.Config{GCInterval: session.Never})
	_, h := newSession(t, m, 1)
	rfc := `\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)`
	if out := mustRun(t, m, "list"); !regexp.MustCompile(`(?m)^[A-Za-z0-9_-]{22}  ` + rfc + `  ` + rfc + `  `).MatchString(out) {
		t.Errorf("list times:\n%s", out)
	}
	out := mustRun(t, m, "show", h)
	for _, field := range []string{"created", "last activity", "expires"} {
		if !regexp.MustCompile(`(?m)^` + field + `: +` + rfc + `( \(.*\))?$`).MatchString(out) {
			t.Errorf("show's %s is not RFC 3339:\n%s", field, out)
		}
	}
}

// TestFlags: Output.Flags registers -json and -yes.
func TestFlags(t *testing.T) {
	var o sessionctl.Output
	fs := newFlagSet()
	o.Flags(fs)
	if err := fs.Parse([]string{"-json", "-yes"}); err != nil {
		t.Fatal(err)
	}
	if !o.JSON || !o.Yes {
		t.Errorf("after -json -yes: %+v", o)
	}
	var help bytes.Buffer
	fs.SetOutput(&help)
	fs.PrintDefaults()
	if !strings.Contains(help.String(), "-json") || !strings.Contains(help.String(), "-yes") {
		t.Errorf("flags:\n%s", help.String())
	}
}

// Package perfdoc holds what the bench commands share about
// docs/performance.md: the marked sections each command rewrites, the
// load-test results, and the counted store round trips per request
// (TestRequestCounts) with the targets they are judged against.
package perfdoc

import (
	"errors"
	"os"
	"strings"
)

// LoadTest is what cmd/loadtest measured: requests per second and Redis
// commands per request, per system ("fxsession", "scs", "floor") and route.
type LoadTest struct {
	Date        string                        `json:"date"`
	Duration    string                        `json:"duration"`
	Connections int                           `json:"connections"`
	Threads     int                           `json:"threads"`
	RPS         map[string]map[string]float64 `json:"rps"`            // route -> system -> requests/s
	Commands    map[string]map[string]float64 `json:"cmds_per_req"`   // route -> system -> commands/request
	Errors      map[string]map[string]int64   `json:"non_2xx_or_err"` // route -> system -> failed requests
	// CPU is the CPU time per request, in microseconds, of each process taking
	// part: route -> system -> "server", "redis" or "wrk".
	CPU     map[string]map[string]map[string]float64 `json:"cpu_us_per_req,omitempty"`
	Load    string                                   `json:"load,omitempty"`    // load averages at the start and the end
	Library string                                   `json:"library,omitempty"` // the commit the demo was built from
}

// Counts is what the bench module's TestRequestCounts measured: the store
// round trips of one request of each scenario, per system and store. They are
// counts, the same on every run, not times.
type Counts struct {
	Date string     `json:"date"`
	Rows []CountRow `json:"rows"`
}

// CountRow is one scenario's request on one system and store.
type CountRow struct {
	Scenario string `json:"scenario"` // one of the Scenarios' names
	System   string `json:"system"`   // "fxsession" or "scs"
	Store    string `json:"store"`    // "redis", "memory" or "file"
	// RoundTrips: on Redis the client's round trips (a command or a pipeline
	// each, as a go-redis hook sees them); on memory and file the store calls
	// (cachetest.Counter for fxsession, a wrapper of scs.Store for scs).
	RoundTrips int64 `json:"round_trips"`
	// Writes: of the round trips, those that change the store.
	Writes int64 `json:"writes"`
	// Commands (Redis only): the commands the client sent (a script call is one).
	Commands int64 `json:"commands,omitempty"`
	// ServerCommands (Redis only): the commands the server ran, those run by Lua
	// scripts included (INFO stats' total_commands_processed).
	ServerCommands int64 `json:"server_commands,omitempty"`
	// Calls lists the round trips in order: Redis command names (a pipeline in
	// brackets) or store operations.
	Calls string `json:"calls"`
}

// Scenario is one request TestRequestCounts counts.
type Scenario struct {
	Name, What string
}

// Scenarios are the requests counted, in the order the documents show them.
var Scenarios = []Scenario{
	{"start", "a new visitor's first add: starts the session (no cookie yet)"},
	{"page", "resume, then read every object and value an HTML page shows (basket object, user value, a bag, flashes peeked, tags); changes nothing"},
	{"add", "an add to the basket through Handle.Update (scs: Get + Put)"},
	{"add-get", "the same add through Handle.Get and a change in place, written at the commit point (fxsession only)"},
	{"login", "RenewID + Put of the user + AddTag of the user's tag (scs: RenewToken + Put; scs has no tags)"},
	{"logout", "the whole logout request: resume (scs: load) and Destroy"},
	{"destroy", "the Destroy call of the logout request alone"},
}

// CountTarget is a target of the product brief on the counts, checked on
// every store: the scenario's round trips (or, with Writes, its writes) lie
// between Min and Max.
type CountTarget struct {
	Scenario string
	What     string
	Writes   bool
	Min, Max int64
}

// Value is the count the target judges.
func (tg CountTarget) Value(r CountRow) int64 {
	if tg.Writes {
		return r.Writes
	}
	return r.RoundTrips
}

// Met reports whether r meets the target.
func (tg CountTarget) Met(r CountRow) bool {
	v := tg.Value(r)
	return v >= tg.Min && v <= tg.Max
}

// CountTargets are the brief's targets on store round trips (issue 12): on
// Redis in client round trips, on memory and file in store calls.
var CountTargets = []CountTarget{
	{Scenario: "page", What: "resume and read every object and value an HTML page uses = 1 round trip", Min: 1, Max: 1},
	{Scenario: "page", What: "a request that changes nothing = 0 writes", Writes: true, Min: 0, Max: 0},
	{Scenario: "add", What: "an add through Update ≤ 2 round trips", Min: 1, Max: 2},
	{Scenario: "start", What: "the request that starts a session = 1 write", Writes: true, Min: 1, Max: 1},
	{Scenario: "login", What: "login (RenewID + Put + AddTag) ≤ 2 round trips", Min: 1, Max: 2},
	{Scenario: "destroy", What: "destroy = 1 round trip", Min: 1, Max: 1},
}

// Skeleton is the document written when it does not exist yet.
const Skeleton = `# Performance

How fxsession compares with alexedwards/scs, gorilla/sessions and a per-request
dig child scope on the same workload, and where it stands against the targets of
the product brief. Reproduce with ` + "`make bench`" + ` (about six minutes on two
cores) and ` + "`make loadtest`" + `.

<!-- bench:begin -->
<!-- bench:end -->

<!-- loadtest:begin -->
<!-- loadtest:end -->

## What stands between us and the targets

(Not written yet.)
`

// Splice replaces the text between "<!-- name:begin -->" and "<!-- name:end -->"
// in the file at path with body, creating the file from a skeleton, or
// appending the markers, when they are missing.
func Splice(path, name, body string) error {
	old, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		old, err = []byte(Skeleton), nil
	}
	if err != nil {
		return err
	}
	begin, end := "<!-- "+name+":begin -->", "<!-- "+name+":end -->"
	doc := string(old)
	i, j := strings.Index(doc, begin), strings.Index(doc, end)
	if i < 0 || j < i {
		doc = strings.TrimRight(doc, "\n") + "\n\n" + begin + "\n" + end + "\n"
		i, j = strings.Index(doc, begin), strings.Index(doc, end)
	}
	doc = doc[:i+len(begin)] + "\n" + strings.TrimSpace(body) + "\n" + doc[j:]
	return os.WriteFile(path, []byte(doc), 0o644)
}

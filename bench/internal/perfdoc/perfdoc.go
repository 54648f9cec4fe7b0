// Package perfdoc holds what the bench commands share about
// docs/performance.md: the marked sections each command rewrites, and the
// load-test results.
package perfdoc

import (
	"errors"
	"os"
	"strings"
)

// LoadTest is what cmd/loadtest measured: requests per second and Redis
// commands per request, per system and route.
type LoadTest struct {
	Date        string                        `json:"date"`
	Duration    string                        `json:"duration"`
	Connections int                           `json:"connections"`
	Threads     int                           `json:"threads"`
	RPS         map[string]map[string]float64 `json:"rps"`            // route -> system -> requests/s
	Commands    map[string]map[string]float64 `json:"cmds_per_req"`   // route -> system -> commands/request
	Errors      map[string]map[string]int64   `json:"non_2xx_or_err"` // route -> system -> failed requests
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

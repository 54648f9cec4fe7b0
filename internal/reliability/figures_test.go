package reliability_test

import (
	"encoding/json"
	"os"
	"strings"
	"sync"
	"testing"
)

// figuresEnv names the file that collects the figures as JSON lines (set by
// `make reliability`); ./tablegen turns it into the table of docs/reliability.md.
const figuresEnv = "FXSESSION_RELIABILITY_FIGURES"

// figure is one row of the reliability table: what was tried, how much, what
// was lost, and the measurements behind it.
type figure struct {
	Area     string `json:"area"`     // Concurrency, Faults, Hostile input, Security
	Check    string `json:"check"`    // what was tried
	Amount   string `json:"amount"`   // how much
	Lost     string `json:"lost"`     // what was lost ("nothing" when nothing was)
	Measured string `json:"measured"` // the figures observed
	Test     string `json:"test"`     // the test (and subtest) that produced it
	Mode     string `json:"mode"`     // "make test" or "make reliability"
}

// figuresMu serialises appends to the figures file within this process.
var figuresMu sync.Mutex

// pick returns the count of the current mode.
func pick[T any](short, full T) T {
	if long {
		return full
	}
	return short
}

// record logs f and appends it to the figures file when one is named. It is
// called only when the check passed, so Lost states what the check proved.
func record(t testing.TB, f figure) {
	t.Helper()
	if t.Failed() {
		return
	}
	f.Test = t.Name()
	f.Mode = pick("make test", "make reliability")
	if f.Lost == "" {
		f.Lost = "nothing"
	}
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("figure: %s", b)
	path := os.Getenv(figuresEnv)
	if path == "" {
		return
	}
	figuresMu.Lock()
	defer figuresMu.Unlock()
	fh, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("figures file: %v", err)
	}
	defer fh.Close()
	if _, err := fh.Write(append(b, '\n')); err != nil {
		t.Fatalf("figures file: %v", err)
	}
}

// joinf joins measurement fragments with "; ".
func joinf(parts ...string) string { return strings.Join(parts, "; ") }

// tidy replaces the test's temporary folder in s by "$DIR", so that the table
// shows errors without run-specific paths.
func tidy(s, dir string) string { return strings.ReplaceAll(s, dir, "$DIR") }

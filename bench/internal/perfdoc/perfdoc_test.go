package perfdoc_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fxsession/fxsession/bench/internal/perfdoc"
)

func TestSplice(t *testing.T) {
	path := filepath.Join(t.TempDir(), "performance.md")
	if err := perfdoc.Splice(path, "bench", "## Benchmarks\n\nfirst"); err != nil {
		t.Fatal(err)
	}
	if err := perfdoc.Splice(path, "loadtest", "## Load test\n\nwrk"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	doc := strings.Replace(string(b), "(Not written yet.)", "hand-written analysis", 1)
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := perfdoc.Splice(path, "bench", "## Benchmarks\n\nsecond"); err != nil {
		t.Fatal(err)
	}
	if err := perfdoc.Splice(path, "extra", "appended"); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(path)
	got := string(b)
	for _, want := range []string{"second", "## Load test\n\nwrk", "hand-written analysis", "<!-- extra:begin -->\nappended\n<!-- extra:end -->"} {
		if !strings.Contains(got, want) {
			t.Errorf("document lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "first") {
		t.Errorf("the old bench section survived:\n%s", got)
	}
}

// Splice rewrites one marked section and keeps the rest of the document.
func ExampleSplice() {
	dir, _ := os.MkdirTemp("", "perfdoc")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "doc.md")
	_ = os.WriteFile(path, []byte("intro\n<!-- bench:begin -->\nold\n<!-- bench:end -->\noutro\n"), 0o644)
	_ = perfdoc.Splice(path, "bench", "new")
	b, _ := os.ReadFile(path)
	fmt.Print(string(b))
	// Output:
	// intro
	// <!-- bench:begin -->
	// new
	// <!-- bench:end -->
	// outro
}

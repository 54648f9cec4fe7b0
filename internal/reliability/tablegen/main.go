// Command tablegen turns the figures recorded by the reliability checks (JSON
// lines, see internal/reliability) and the log of a fuzz run (scripts/fuzz.sh)
// into the Markdown table of docs/reliability.md.
//
//	go run ./internal/reliability/tablegen -figures figures.jsonl -fuzzlog fuzz.log -doc docs/reliability.md
//
// With -doc it replaces the text between the markers
// "<!-- reliability-table:begin -->" and "<!-- reliability-table:end -->" in that
// file; without, it prints the table.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"regexp"
	"strings"
)

const (
	beginMarker = "<!-- reliability-table:begin -->"
	endMarker   = "<!-- reliability-table:end -->"
)

// figure is one recorded row (internal/reliability/figures_test.go).
type figure struct {
	Area     string `json:"area"`
	Check    string `json:"check"`
	Amount   string `json:"amount"`
	Lost     string `json:"lost"`
	Measured string `json:"measured"`
	Test     string `json:"test"`
	Mode     string `json:"mode"`
}

// fuzzRun is one fuzz target's result in a scripts/fuzz.sh log.
type fuzzRun struct {
	target, dir, fuzztime string
	elapsed, execs        string
	interesting           string
	passed                bool
	reason, input         string // why and on what it failed
}

var areas = []string{"Concurrency", "Faults", "Hostile input", "Security"}

func main() {
	figures := flag.String("figures", "", "JSON lines written by the checks (FXSESSION_RELIABILITY_FIGURES)")
	fuzzlog := flag.String("fuzzlog", "", "output of scripts/fuzz.sh")
	doc := flag.String("doc", "", "Markdown file whose table to replace (default: print the table)")
	date := flag.String("date", "", "when the run happened, for the caption")
	flag.Parse()
	if err := run(*figures, *fuzzlog, *doc, *date); err != nil {
		fmt.Fprintln(os.Stderr, "tablegen:", err)
		os.Exit(1)
	}
}

func run(figuresPath, fuzzPath, docPath, date string) error {
	figs, err := readFigures(figuresPath)
	if err != nil {
		return err
	}
	var fuzz []fuzzRun
	if fuzzPath != "" {
		if fuzz, err = readFuzz(fuzzPath); err != nil {
			return err
		}
	}
	table := render(figs, fuzz, date)
	if docPath == "" {
		fmt.Print(table)
		return nil
	}
	doc, err := os.ReadFile(docPath)
	if err != nil {
		return err
	}
	i := bytes.Index(doc, []byte(beginMarker))
	j := bytes.Index(doc, []byte(endMarker))
	if i < 0 || j < i {
		return fmt.Errorf("%s: no %s … %s markers", docPath, beginMarker, endMarker)
	}
	var out bytes.Buffer
	out.Write(doc[:i+len(beginMarker)])
	out.WriteString("\n")
	out.WriteString(table)
	out.Write(doc[j:])
	return os.WriteFile(docPath, out.Bytes(), 0o644)
}

func readFigures(path string) ([]figure, error) {
	if path == "" {
		return nil, errors.New("-figures is required")
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []figure
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var fg figure
		if err := json.Unmarshal(sc.Bytes(), &fg); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, fg)
	}
	return out, sc.Err()
}

var (
	fuzzStart   = regexp.MustCompile(`^fuzz: (Fuzz\S+) in (\S+) for (\S+)$`)
	fuzzReason  = regexp.MustCompile(`^\S+_test\.go:\d+: (.+)$`)
	fuzzInput   = regexp.MustCompile(`^fuzz: failing input moved to (\S+)$`)
	fuzzElapsed = regexp.MustCompile(`^fuzz: elapsed: (\S+), execs: (\d+) .*new interesting: (\d+) \(total: (\d+)\)`)
)

func readFuzz(path string) ([]fuzzRun, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []fuzzRun
	for line := range strings.SplitSeq(string(b), "\n") {
		line = strings.TrimSpace(line)
		if m := fuzzStart.FindStringSubmatch(line); m != nil {
			out = append(out, fuzzRun{target: m[1], dir: m[2], fuzztime: m[3]})
			continue
		}
		if len(out) == 0 {
			continue
		}
		cur := &out[len(out)-1]
		if m := fuzzElapsed.FindStringSubmatch(line); m != nil {
			cur.elapsed, cur.execs, cur.interesting = m[1], m[2], m[4]
		}
		if strings.HasPrefix(line, "ok ") || line == "PASS" {
			cur.passed = true
		}
		if strings.HasPrefix(line, "--- FAIL") || strings.HasPrefix(line, "FAIL") {
			cur.passed = false
		}
		if m := fuzzReason.FindStringSubmatch(line); m != nil && cur.reason == "" {
			cur.reason = m[1]
		}
		if strings.HasPrefix(line, "fuzzing process hung or terminated unexpectedly") && cur.reason == "" {
			cur.reason = line
		}
		if m := fuzzInput.FindStringSubmatch(line); m != nil {
			cur.input = m[1]
		}
	}
	return out, nil
}

func cell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.ReplaceAll(s, "\n", " ")
}

// command is how to rerun the check that recorded f.
func command(f figure) string {
	top, _, _ := strings.Cut(f.Test, "/")
	run := "^" + top + "$"
	if f.Mode == "make reliability" {
		return fmt.Sprintf("`make reliability` (`go test -tags reliability -run '%s' ./internal/reliability`)", run)
	}
	return fmt.Sprintf("`make test` (`go test -race -run '%s' ./internal/reliability`)", run)
}

// render writes one table per area, the fuzz runs under "Hostile input".
func render(figs []figure, fuzz []fuzzRun, date string) string {
	var b strings.Builder
	if date != "" {
		fmt.Fprintf(&b, "Figures of the run of %s.\n\n", date)
	}
	for _, area := range areas {
		var rows []figure
		for _, f := range figs {
			if f.Area == area {
				rows = append(rows, f)
			}
		}
		if len(rows) == 0 && (area != "Hostile input" || len(fuzz) == 0) {
			continue
		}
		fmt.Fprintf(&b, "### %s\n\n", area)
		b.WriteString("| What was tried | How much | What was lost | Measured | Produced by |\n")
		b.WriteString("|---|---|---|---|---|\n")
		for _, f := range rows {
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", cell(f.Check), cell(f.Amount), cell(f.Lost), cell(f.Measured), command(f))
		}
		if area == "Hostile input" {
			for _, r := range fuzz {
				lost, measured := "nothing: no panic, no failure", "no crasher"
				if !r.passed {
					measured = "crasher found after " + r.elapsed
					lost = "**FAILED**: " + r.reason
					if in := crasher(r.input); in != "" {
						lost += "; failing input `" + in + "`"
					}
				}
				fmt.Fprintf(&b, "| fuzz target %s (%s) | %s, %s executions, corpus %s entries | %s | %s | `make reliability` (`go test -run '^$' -fuzz '^%s$' -fuzztime %s %s`) |\n",
					r.target, strings.TrimPrefix(r.dir, "./"), r.elapsed, r.execs, r.interesting, cell(lost), measured, r.target, r.fuzztime, r.dir)
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}

// crasher returns the value line of a failing input file (go test fuzz v1), or
// "" when it cannot be read.
func crasher(path string) string {
	if path == "" {
		return ""
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) < 2 {
		return ""
	}
	return strings.Join(lines[1:], " ")
}

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestMakeHelp: `make` alone runs help, which lists every target of the
// Makefile (the demo is where a newcomer starts: `make demo`).
func TestMakeHelp(t *testing.T) {
	makeTool, err := exec.LookPath("make")
	if err != nil {
		t.Fatal("make not found: run `make deps`")
	}
	root := filepath.Join("..", "..")
	cmd := exec.Command(makeTool, "--no-print-directory", "-C", root)
	cmd.Env = cleanEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make: %v\n%s", err, out)
	}
	help := string(out)
	if !strings.HasPrefix(help, "usage: make TARGET\n") {
		t.Errorf("make alone does not print the help:\n%s", help)
	}
	makefile, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	targets := []string{"demo", "test", "lint", "vet", "fuzz", "deps", "bench", "loadtest", "reliability", "importer"}
	for _, m := range regexp.MustCompile(`(?m)^([a-z][a-z0-9-]*):`).FindAllStringSubmatch(string(makefile), -1) {
		if m[1] != "all" {
			targets = append(targets, m[1])
		}
	}
	for _, target := range targets {
		if !regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(target) + ` +\S`).MatchString(help) {
			t.Errorf("make help does not list %q:\n%s", target, help)
		}
	}
}

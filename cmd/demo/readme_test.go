package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
)

// TestReadmeScreenshots: the README shows the screenshots the browser test
// takes (catalog, basket, basket at phone width, sessions), and every picture it shows
// exists.
func TestReadmeScreenshots(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var shown []string
	for _, m := range regexp.MustCompile(`!\[[^\]]+\]\((docs/img/[^)]+)\)`).FindAllStringSubmatch(string(readme), -1) {
		shown = append(shown, m[1])
		if _, err := os.Stat(filepath.Join("..", "..", m[1])); err != nil {
			t.Errorf("the README shows a missing picture: %v", err)
		}
	}
	for _, want := range []string{"catalog.png", "basket.png", "basket-phone.png", "sessions.png"} {
		if !slices.Contains(shown, "docs/img/"+want) {
			t.Errorf("the README does not show %s (it shows %q)", want, shown)
		}
	}
}

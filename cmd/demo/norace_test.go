//go:build !race

package main

// raceEnabled: the tests run without -race, so the demo binary they build is
// built without it too (reusing the build cache).
const raceEnabled = false

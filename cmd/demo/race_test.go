//go:build race

package main

// raceEnabled: the tests run with -race, so the demo binary they build is too
// (it then reuses the race-built packages of the build cache, and the processes
// report data races).
const raceEnabled = true

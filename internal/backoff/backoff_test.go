package backoff

import (
	"context"
	"testing"
	"time"
)

func TestWaitGrowsAndStops(t *testing.T) {
	b := Backoff{Min: time.Millisecond, Max: 4 * time.Millisecond}
	for range 5 {
		if !b.Wait(t.Context()) {
			t.Fatal("Wait gave up without a deadline")
		}
	}
	if b.next != 4*time.Millisecond {
		t.Fatalf("step %v after five waits, want it capped at Max (4ms)", b.next)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if b.Wait(ctx) {
		t.Fatal("Wait went on with an ended context")
	}
	// A pause of an hour cut at a deadline 5 ms away: any bound far below an
	// hour tells the two apart, even on a machine that stalls the test.
	d := Backoff{Min: time.Hour, Deadline: time.Now().Add(5 * time.Millisecond)}
	start := time.Now()
	d.Wait(t.Context())
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("a pause went past the deadline: %v", took)
	}
	if d.Wait(t.Context()) {
		t.Fatal("Wait went on after the deadline")
	}
	var zero Backoff // defaults: 1 ms up to 64 ms
	if !zero.Wait(t.Context()) || zero.next != 2*time.Millisecond {
		t.Fatalf("zero value: step %v", zero.next)
	}
}

func TestSleep(t *testing.T) {
	if err := Sleep(t.Context(), time.Millisecond); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := Sleep(ctx, time.Hour); err == nil {
		t.Fatal("Sleep ignored an ended context")
	}
}

package session

import (
	"context"
	"errors"
	"testing"
	"time"
)

type ccKey struct{}

func TestCommitContext(t *testing.T) {
	parent, cancelParent := context.WithCancel(context.WithValue(context.Background(), ccKey{}, "v"))
	cancelParent() // the request's cancellation does not reach the commit
	c := &commitContext{parent: context.WithoutCancel(parent)}

	c.begin(time.Now().Add(time.Hour))
	if c.Value(ccKey{}) != "v" || c.Err() != nil {
		t.Fatalf("value %v, err %v", c.Value(ccKey{}), c.Err())
	}
	if d, ok := c.Deadline(); !ok || time.Until(d) < 59*time.Minute {
		t.Fatalf("deadline %v %v", d, ok)
	}
	if context.Cause(c) != nil {
		t.Fatalf("cause %v", context.Cause(c))
	}
	c.end()
	if !errors.Is(c.Err(), context.Canceled) || c.kept() {
		t.Fatalf("after end: err %v, kept %v", c.Err(), c.kept())
	}

	// Restarted: the ended point's error is gone.
	c.begin(time.Now().Add(time.Hour))
	if c.Err() != nil {
		t.Fatalf("after a restart: err %v", c.Err())
	}
	c.end()

	// Restarted; the deadline passes without anyone waiting. Nothing here
	// depends on how fast the test runs: an error is wrong only if the clock
	// read after it still shows the deadline ahead (the error was given
	// before it), and the wait ends only once the clock shows it passed.
	deadline := time.Now().Add(20 * time.Millisecond)
	c.begin(deadline)
	if err := c.Err(); err != nil && time.Now().Before(deadline) {
		t.Fatalf("before the deadline: err %v", err)
	}
	for d := time.Until(deadline); d > 0; d = time.Until(deadline) {
		time.Sleep(d)
	}
	if !errors.Is(c.Err(), context.DeadlineExceeded) {
		t.Fatalf("err %v", c.Err())
	}
	select {
	case <-c.Done():
	default:
		t.Fatal("Done not closed after the deadline")
	}
	c.end()
	if !errors.Is(c.Err(), context.DeadlineExceeded) || !c.kept() {
		t.Fatalf("err %v kept %v", c.Err(), c.kept())
	}

	// Done asked first: the timer closes it; a derived context follows.
	c = &commitContext{parent: context.WithoutCancel(parent)}
	c.begin(time.Now().Add(20 * time.Millisecond))
	child, cancel := context.WithCancel(c)
	defer cancel()
	select {
	case <-child.Done():
		if !errors.Is(c.Err(), context.DeadlineExceeded) || !errors.Is(child.Err(), context.DeadlineExceeded) {
			t.Fatalf("errs %v %v", c.Err(), child.Err())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the deadline never closed Done")
	}

	// end closes a Done channel someone waits on.
	c = &commitContext{parent: context.WithoutCancel(parent)}
	c.begin(time.Now().Add(time.Hour))
	done := c.Done()
	c.end()
	select {
	case <-done:
	default:
		t.Fatal("end did not close Done")
	}
	if !errors.Is(c.Err(), context.Canceled) {
		t.Fatal(c.Err())
	}
}

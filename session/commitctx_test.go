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

	// Restarted; the deadline passes without anyone waiting.
	c.begin(time.Now().Add(time.Millisecond))
	if c.Err() != nil {
		t.Fatal(c.Err())
	}
	time.Sleep(5 * time.Millisecond)
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

package sessionctl

import (
	"fmt"
	"io"
	"time"
)

// progress writes "... N sessions <what>" lines on long runs: every `every`
// sessions and whenever `interval` passed since the last line.
type progress struct {
	w        io.Writer
	what     string
	every    int
	interval time.Duration
	n        int
	last     time.Time
}

func (o Output) progress(what string) *progress {
	p := &progress{w: o.Progress, what: what, every: o.Every, interval: o.Interval, last: time.Now()}
	if p.every <= 0 {
		p.every = 1000
	}
	if p.interval == 0 {
		p.interval = time.Second
	}
	return p
}

// add counts k more sessions.
func (p *progress) add(k int) {
	if p.w == nil || k <= 0 {
		return
	}
	before := p.n
	p.n += k
	crossed := p.n/p.every > before/p.every
	if crossed || p.interval > 0 && time.Since(p.last) >= p.interval {
		fmt.Fprintf(p.w, "... %d sessions %s\n", p.n, p.what)
		p.last = time.Now()
	}
}

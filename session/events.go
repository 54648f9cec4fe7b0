package session

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/fx"
)

// EventKind says what happened to a session.
type EventKind uint8

// The lifecycle events.
const (
	// EventStarted: a session was created in the store.
	EventStarted EventKind = iota + 1
	// EventRenewed: a session's ID was renewed (Reason "renew": RenewID, e.g. on
	// login; "rotation": Config.RotateAfter).
	EventRenewed
	// EventDestroyed: a session was destroyed; Reason says why (see the Reason
	// constants).
	EventDestroyed
	// EventExpired: the collector removed a session that had expired
	// (inactivity timeout, its own lifetime, or the absolute lifetime).
	EventExpired
)

func (k EventKind) String() string {
	switch k {
	case EventStarted:
		return "started"
	case EventRenewed:
		return "renewed"
	case EventDestroyed:
		return "destroyed"
	case EventExpired:
		return "expired"
	}
	return fmt.Sprintf("EventKind(%d)", uint8(k))
}

// Reasons of EventDestroyed and EventRenewed, as the library gives them. A
// Destroy by the application carries the reason the application passed.
const (
	ReasonLogout   = "logout"   // Session.Destroy without a reason of its own
	ReasonByTag    = "by-tag"   // Manager.DestroyByTag (log a user out everywhere)
	ReasonAdmin    = "admin"    // Manager.Destroy, Manager.DestroyAll (the admin commands)
	ReasonCap      = "cap"      // Config.MaxSessionsPerUser evicted it
	ReasonRenew    = "renew"    // Session.RenewID
	ReasonRotation = "rotation" // Config.RotateAfter
)

// Event is one lifecycle event of a session. Listeners receive it after the
// change reached the store.
type Event struct {
	Kind EventKind
	// Ref is the session's public reference (never its ID).
	Ref string
	// Reason says why (Destroyed, Renewed).
	Reason string
	// Time is when it happened, by the manager's clock.
	Time time.Time
	// Metadata is the session as it was: created, last used, device, tags, …
	// (fields the event's source did not know are zero).
	Metadata Metadata
}

// Listener receives lifecycle events. Listeners run one event at a time, in
// order, on a goroutine of the manager, never on a request's: a slow or failing
// listener delays other events, never a request. A panic in a listener is
// recovered and logged.
//
// Delivery is at most once: Started, Renewed and Destroyed events are sent by
// the process that made the change, once it reached the store; each Expired
// event by the one collector, among all processes sharing the store, that
// removed the session. Events still queued when a process dies, or beyond
// Config.EventBuffer, are lost (the latter are logged).
type Listener func(ctx context.Context, e Event)

// listenerGroup is the fx value group of listeners registered with Listen.
const listenerGroup = "fxsession.session.listeners"

// Listen registers fn as a lifecycle [Listener] of the [Module]'s manager (the
// fx form of [Manager.Listen]).
func Listen(fn Listener) fx.Option {
	if fn == nil {
		return fx.Error(fmt.Errorf("session.Listen(nil): want a listener"))
	}
	return fx.Provide(fx.Annotate(func() Listener { return fn }, fx.ResultTags(`group:"`+listenerGroup+`"`)))
}

// events delivers a manager's events to its listeners.
type events struct {
	mu        sync.Mutex
	listeners []Listener
	queue     chan Event
	stop      chan struct{}
	done      chan struct{}
	started   bool
	closed    bool
	dropped   atomic.Int64
}

// Listen registers fn as a lifecycle listener. Register listeners before the
// manager starts serving (like bags: later it is ErrRegistrationClosed). With
// [New], call [Manager.Close] when done, to stop the delivery goroutine.
func (m *Manager) Listen(fn Listener) error {
	if fn == nil {
		return fmt.Errorf("session: Listen(nil): want a listener")
	}
	m.regMu.Lock()
	defer m.regMu.Unlock()
	if m.sealed.Load() {
		return fmt.Errorf("%w: listener", ErrRegistrationClosed)
	}
	m.ev.mu.Lock()
	m.ev.listeners = append(m.ev.listeners, fn)
	m.ev.mu.Unlock()
	return nil
}

// listening reports whether any listener is registered.
func (m *Manager) listening() bool {
	m.ev.mu.Lock()
	defer m.ev.mu.Unlock()
	return len(m.ev.listeners) > 0 && !m.ev.closed
}

// emit queues an event for the listeners, if any; it never blocks.
func (m *Manager) emit(e Event) {
	ev := &m.ev
	ev.mu.Lock()
	if len(ev.listeners) == 0 || ev.closed {
		ev.mu.Unlock()
		return
	}
	if !ev.started {
		ev.started = true
		ev.queue = make(chan Event, m.cfg.eventBuffer)
		ev.stop = make(chan struct{})
		ev.done = make(chan struct{})
		go m.deliver()
	}
	select {
	case ev.queue <- e:
	default:
		if n := ev.dropped.Add(1); n&(n-1) == 0 { // log at 1, 2, 4, 8, …
			m.log.Warn("session event dropped: the listeners cannot keep up (raise Config.EventBuffer)", "kind", e.Kind.String(), "dropped", n)
		}
	}
	ev.mu.Unlock()
}

// deliver runs the listeners until Close.
func (m *Manager) deliver() {
	ev := &m.ev
	defer close(ev.done)
	ctx := context.Background()
	for {
		select {
		case e := <-ev.queue:
			m.dispatch(ctx, e)
		case <-ev.stop:
			for { // what is queued still goes out
				select {
				case e := <-ev.queue:
					m.dispatch(ctx, e)
				default:
					return
				}
			}
		}
	}
}

func (m *Manager) dispatch(ctx context.Context, e Event) {
	for _, fn := range m.ev.listeners {
		func() {
			defer func() {
				if p := recover(); p != nil {
					m.log.Error("session event listener panicked", "kind", e.Kind.String(), "panic", p)
				}
			}()
			fn(ctx, e)
		}()
	}
}

// Close stops delivering events, after the queued ones went out. [Module] calls
// it when the app stops. The manager keeps serving sessions; later events are
// not delivered.
func (m *Manager) Close() error {
	ev := &m.ev
	ev.mu.Lock()
	if ev.closed {
		ev.mu.Unlock()
		return nil
	}
	ev.closed = true
	started := ev.started
	ev.mu.Unlock()
	if started {
		close(ev.stop)
		<-ev.done
	}
	return nil
}

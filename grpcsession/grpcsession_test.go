package grpcsession_test

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/cachetest"
	"github.com/fxsession/fxsession/cache/memstore"
	"github.com/fxsession/fxsession/grpcsession"
	"github.com/fxsession/fxsession/scope"
	"github.com/fxsession/fxsession/session"
)

// Counter is session-scoped: each call's handler reaches it through a Handle.
type Counter struct {
	N int `msgpack:"n" session:"autostart"`
}

func NewCounter() *Counter { return &Counter{} }

// service is the interop TestService: UnaryCall's payload is a command, each
// message of FullDuplexCall answers the counter.
type service struct {
	testpb.UnimplementedTestServiceServer
	counter scope.Handle[*Counter]
}

func reply(n int) *testpb.Payload { return &testpb.Payload{Body: []byte(strconv.Itoa(n))} }

func (s *service) UnaryCall(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	switch string(req.GetPayload().GetBody()) {
	case "add":
		if err := s.counter.Update(ctx, func(c *Counter) error { c.N++; return nil }); err != nil {
			return nil, err
		}
	case "renew":
		sess, _ := session.FromContext(ctx)
		if err := sess.RenewID(ctx); err != nil {
			return nil, err
		}
	case "destroy":
		sess, _ := session.FromContext(ctx)
		if err := sess.Destroy(ctx, ""); err != nil {
			return nil, err
		}
	}
	c, err := s.counter.Get(ctx)
	if err != nil {
		return nil, err
	}
	return &testpb.SimpleResponse{Payload: reply(c.N)}, nil
}

func (s *service) FullDuplexCall(stream grpc.BidiStreamingServer[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse]) error {
	for {
		if _, err := stream.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		c, err := s.counter.Get(stream.Context())
		if err != nil {
			return err
		}
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: reply(c.N)}); err != nil {
			return err
		}
	}
}

type env struct {
	client testpb.TestServiceClient
	fail   *atomic.Bool
	writes *atomic.Int64
}

func newEnv(t *testing.T, cfg session.Config, o grpcsession.Options) *env {
	t.Helper()
	e := &env{fail: &atomic.Bool{}, writes: &atomic.Int64{}}
	store := cachetest.Wrap(memstore.New(memstore.Options{}), func(_ context.Context, c cachetest.Call) error {
		if e.fail.Load() {
			return cache.Unavailable("test", errors.New("injected"))
		}
		if c.Op == cachetest.OpWrite {
			e.writes.Add(1)
		}
		return nil
	})
	var (
		m   *session.Manager
		svc service
	)
	app := fxtest.New(t, fx.NopLogger,
		session.Module,
		fx.Supply(cfg),
		fx.Provide(func() cache.Store { return store }),
		scope.Provide(NewCounter),
		fx.Populate(&m, &svc.counter),
	)
	app.RequireStart()
	t.Cleanup(app.RequireStop)
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(grpcsession.UnaryServerInterceptor(m, o)),
		grpc.ChainStreamInterceptor(grpcsession.StreamServerInterceptor(m, o)),
	)
	testpb.RegisterTestServiceServer(srv, &svc)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	e.client = testpb.NewTestServiceClient(conn)
	return e
}

// call runs UnaryCall with the command and the ID (may be ""); it returns the
// counter and the response header's ID (nil when the header has none).
func (e *env) call(t *testing.T, key, value, cmd string) (int, []string, error) {
	t.Helper()
	ctx := t.Context()
	if value != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, key, value)
	}
	var header metadata.MD
	resp, err := e.client.UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte(cmd)}}, grpc.Header(&header))
	if err != nil {
		return 0, nil, err
	}
	n, _ := strconv.Atoi(string(resp.GetPayload().GetBody()))
	return n, header.Get(grpcsession.DefaultKey), nil
}

func TestUnary(t *testing.T) {
	for _, c := range []struct {
		name   string
		o      grpcsession.Options
		key    string
		prefix string
	}{
		{"x-session-token", grpcsession.Options{}, "x-session-token", ""},
		{"authorization", grpcsession.Options{Key: "authorization"}, "authorization", "Session "},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, session.Config{}, c.o)
			// No session: nothing sent, nothing stored.
			if n, id, err := e.call(t, c.key, "", "get"); err != nil || n != 0 || id != nil || e.writes.Load() != 0 {
				t.Fatalf("anonymous get: %d %q %v, %d writes", n, id, err, e.writes.Load())
			}
			// Autostart: the new ID comes back in the header metadata.
			n, id, err := e.call(t, c.key, "", "add")
			if err != nil || n != 1 || len(id) != 1 || !session.ValidID(id[0]) {
				t.Fatalf("first add: %d %q %v", n, id, err)
			}
			sid := id[0]
			n, id, err = e.call(t, c.key, c.prefix+sid, "add")
			if err != nil || n != 2 || id != nil {
				t.Fatalf("second add with the ID: %d %q %v", n, id, err)
			}
			// Renewal: a new ID; the old one is dead.
			n, id, err = e.call(t, c.key, c.prefix+sid, "renew")
			if err != nil || n != 2 || len(id) != 1 || id[0] == sid || !session.ValidID(id[0]) {
				t.Fatalf("renew: %d %q %v", n, id, err)
			}
			renewed := id[0]
			if n, id, _ := e.call(t, c.key, c.prefix+sid, "get"); n != 0 || len(id) != 1 || id[0] != "" {
				t.Fatalf("the old ID after renewal: %d %q (want a fresh counter and an empty ID)", n, id)
			}
			// Malformed values are ignored.
			if n, _, err := e.call(t, c.key, "garbage", "get"); err != nil || n != 0 {
				t.Fatalf("malformed ID: %d %v", n, err)
			}
			// A store that fails: Unavailable.
			e.fail.Store(true)
			_, _, err = e.call(t, c.key, c.prefix+renewed, "get")
			e.fail.Store(false)
			if status.Code(err) != codes.Unavailable {
				t.Fatalf("store down: %v, want Unavailable", err)
			}
			// Destroy: an empty ID tells the client to forget it.
			if _, id, err := e.call(t, c.key, c.prefix+renewed, "destroy"); err != nil || len(id) != 1 || id[0] != "" {
				t.Fatalf("destroy: %q %v", id, err)
			}
		})
	}
}

// TestStream: a stream sees at each message what other calls committed, and
// keeps its session alive while it is open.
func TestStream(t *testing.T) {
	e := newEnv(t, session.Config{UpdateMetadataThreshold: 30 * time.Millisecond}, grpcsession.Options{})
	_, id, err := e.call(t, grpcsession.DefaultKey, "", "add")
	if err != nil || len(id) != 1 {
		t.Fatalf("add: %q %v", id, err)
	}
	ctx := metadata.AppendToOutgoingContext(t.Context(), grpcsession.DefaultKey, id[0])
	stream, err := e.client.FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ask := func() int {
		t.Helper()
		if err := stream.Send(&testpb.StreamingOutputCallRequest{}); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.Atoi(string(resp.GetPayload().GetBody()))
		return n
	}
	if n := ask(); n != 1 {
		t.Fatalf("stream sees %d, want 1", n)
	}
	for want := 2; want <= 4; want++ {
		if _, _, err := e.call(t, grpcsession.DefaultKey, id[0], "add"); err != nil {
			t.Fatal(err)
		}
		if n := ask(); n != want {
			t.Fatalf("after another call's add the stream sees %d, want %d", n, want)
		}
	}
	// Open and idle: the activity is written at the threshold. Nothing else
	// writes now, so every write counted is the stream's keep-alive; wait for
	// two rather than count them in a fixed time (a stall drops ticks).
	before := e.writes.Load()
	start := time.Now()
	for e.writes.Load()-before < 2 && time.Since(start) < 10*time.Second {
		time.Sleep(5 * time.Millisecond)
	}
	if n := e.writes.Load() - before; n < 2 {
		t.Fatalf("%d activity writes while a stream stayed open %v (threshold 30 ms)", n, time.Since(start).Round(time.Millisecond))
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("stream end: %v", err)
	}
}

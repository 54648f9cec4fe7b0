package grpcsession_test

import (
	"context"
	"fmt"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/test/bufconn"

	"github.com/fxsession/fxsession/cache/memstore"
	"github.com/fxsession/fxsession/grpcsession"
	"github.com/fxsession/fxsession/session"
)

// visits counts a client's calls in its session.
type visits struct {
	testpb.UnimplementedTestServiceServer
}

func (visits) EmptyCall(ctx context.Context, _ *testpb.Empty) (*testpb.Empty, error) {
	s, _ := session.FromContext(ctx)
	var n int
	_ = s.Get(ctx, "visits", &n) // 0 before the session starts
	if err := s.Start(ctx); err != nil {
		return nil, err
	}
	if err := s.Put(ctx, "visits", n+1); err != nil {
		return nil, err
	}
	fmt.Println("visit", n+1)
	return &testpb.Empty{}, nil
}

func Example() {
	store := memstore.New(memstore.Options{})
	defer store.Close()
	sessions, _ := session.New(store, session.Config{})

	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(grpcsession.UnaryServerInterceptor(sessions, grpcsession.Options{})),
		grpc.ChainStreamInterceptor(grpcsession.StreamServerInterceptor(sessions, grpcsession.Options{})),
	)
	testpb.RegisterTestServiceServer(srv, visits{})
	lis := bufconn.Listen(1 << 16)
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()

	conn, _ := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	defer conn.Close()
	client := testpb.NewTestServiceClient(conn)

	// The first call starts a session: its ID comes back in the header metadata.
	var header metadata.MD
	_, _ = client.EmptyCall(context.Background(), &testpb.Empty{}, grpc.Header(&header))
	id := header.Get(grpcsession.DefaultKey)[0]
	// Later calls send it.
	ctx := metadata.AppendToOutgoingContext(context.Background(), grpcsession.DefaultKey, id)
	_, _ = client.EmptyCall(ctx, &testpb.Empty{})
	_, _ = client.EmptyCall(ctx, &testpb.Empty{})
	// Output:
	// visit 1
	// visit 2
	// visit 3
}

// Package grpcsession gives gRPC servers fxsession's sessions: a unary and a
// stream server interceptor that resume the session from the request metadata,
// give handlers the session and their session-scoped objects through the
// context (session.FromContext, scope.Handle.Get), commit before the response
// headers go out, and send a new or renewed session ID back in the response
// header metadata.
//
//	srv := grpc.NewServer(
//		grpc.ChainUnaryInterceptor(grpcsession.UnaryServerInterceptor(sessions, grpcsession.Options{})),
//		grpc.ChainStreamInterceptor(grpcsession.StreamServerInterceptor(sessions, grpcsession.Options{})),
//	)
//
// A client sends its ID as "x-session-token" metadata (or, with Options.Key
// "authorization", as "Session <ID>") and reads a new one from the response
// header metadata of the same key; an empty value there means its ID is dead.
//
// # Streams
//
// A stream keeps its session alive while it is open: its activity is written
// whenever the session's update threshold passes. Its view of the session is
// refreshed at each message it receives: the changes it made so far are
// written, and the next use of the session (a value, a bag, a session-scoped
// object) reads what other requests committed meanwhile. Between two received
// messages the stream sees its own view. A stream commits before its first
// header or message goes out; changes it makes later are written when it
// receives its next message and when it ends.
//
// A session that cannot be resumed or saved before the response answers the
// call with codes.Unavailable.
package grpcsession

import (
	"context"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/fxsession/fxsession/session"
)

// DefaultKey is the metadata key of the session ID.
const DefaultKey = "x-session-token"

// Options configure the interceptors. The zero value works.
type Options struct {
	// Key is the request metadata key that carries the session ID (default
	// "x-session-token"). With "authorization", the value is Scheme, a space and
	// the ID.
	Key string
	// Scheme is the authorization scheme when Key is "authorization" (default
	// "Session").
	Scheme string
	// ResponseKey is the response header metadata key a new or renewed ID goes
	// out in (default Key, or "x-session-token" when Key is "authorization").
	ResponseKey string
}

func (o Options) withDefaults() Options {
	o.Key = strings.ToLower(o.Key)
	if o.Key == "" {
		o.Key = DefaultKey
	}
	o.ResponseKey = strings.ToLower(o.ResponseKey)
	if o.Key == "authorization" {
		if o.Scheme == "" {
			o.Scheme = session.DefaultIDScheme
		}
		if o.ResponseKey == "" {
			o.ResponseKey = DefaultKey
		}
	}
	if o.ResponseKey == "" {
		o.ResponseKey = o.Key
	}
	return o
}

// id returns the session ID the incoming metadata carries ("" when none; a
// malformed value is left to session.Manager.Begin, which never looks it up).
func (o Options) id(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get(o.Key) {
		v = strings.TrimSpace(v)
		if o.Scheme != "" {
			scheme, rest, ok := strings.Cut(v, " ")
			if !ok || !strings.EqualFold(scheme, o.Scheme) {
				continue
			}
			v = strings.TrimSpace(rest)
		}
		if session.ValidID(v) {
			return v
		}
	}
	return ""
}

// peerOf describes the caller for the session's logs and device.
func peerOf(ctx context.Context, method string) session.Peer {
	p := session.Peer{Method: method}
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if ua := md.Get("user-agent"); len(ua) > 0 {
			p.UserAgent = ua[0]
		}
	}
	if pr, ok := peer.FromContext(ctx); ok && pr.Addr != nil {
		p.Addr = pr.Addr.String()
	}
	return p
}

// unavailable is the status of a call whose session failed.
func unavailable(err error) error {
	return status.Errorf(codes.Unavailable, "session could not be loaded or saved: %v", err)
}

// exchange is one call's session: it commits once, before the first header,
// and remembers what to tell the client.
type exchange struct {
	o    Options
	x    *session.Exchange
	once sync.Once
	md   metadata.MD // the ID to send, if any
	err  error
}

// commit runs the commit point before the headers (once) and returns the
// metadata to add to them.
func (e *exchange) commit() (metadata.MD, error) {
	e.once.Do(func() {
		id, expire, err := e.x.Commit()
		switch {
		case err != nil:
			e.err = unavailable(err)
		case id != "" || expire:
			e.md = metadata.Pairs(e.o.ResponseKey, id)
		}
	})
	return e.md, e.err
}

// UnaryServerInterceptor gives unary handlers the session of the call's ID.
func UnaryServerInterceptor(m *session.Manager, o Options) grpc.UnaryServerInterceptor {
	o = o.withDefaults()
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		sctx, x := m.Begin(ctx, o.id(ctx), peerOf(ctx, info.FullMethod))
		defer x.End()
		e := &exchange{o: o, x: x}
		// A handler that sends its headers itself commits first.
		if ts := grpc.ServerTransportStreamFromContext(ctx); ts != nil {
			sctx = grpc.NewContextWithServerTransportStream(sctx, &transportStream{ServerTransportStream: ts, e: e})
		}
		resp, err := handler(sctx, req)
		md, cerr := e.commit()
		if cerr != nil {
			return nil, cerr
		}
		if md != nil {
			// Fails only when the handler sent its headers itself: they
			// carried md already (transportStream).
			_ = grpc.SetHeader(sctx, md)
		}
		return resp, err
	}
}

// transportStream commits before a unary handler's own SendHeader.
type transportStream struct {
	grpc.ServerTransportStream
	e *exchange
}

func (t *transportStream) SendHeader(md metadata.MD) error {
	add, err := t.e.commit()
	if err != nil {
		return err
	}
	return t.ServerTransportStream.SendHeader(metadata.Join(md, add))
}

// StreamServerInterceptor gives streaming handlers the session of the call's
// ID, kept alive while the stream is open and refreshed at each received
// message (see the package doc).
func StreamServerInterceptor(m *session.Manager, o Options) grpc.StreamServerInterceptor {
	o = o.withDefaults()
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx := ss.Context()
		sctx, x := m.Begin(ctx, o.id(ctx), peerOf(ctx, info.FullMethod))
		defer x.End()
		x.KeepAlive()
		st := &stream{ServerStream: ss, ctx: sctx, e: &exchange{o: o, x: x}}
		err := handler(srv, st)
		md, cerr := st.e.commit()
		if cerr != nil {
			return cerr
		}
		if md != nil && !st.headerSent {
			_ = ss.SetHeader(md)
		}
		return err
	}
}

// stream is a ServerStream with the session in its context.
type stream struct {
	grpc.ServerStream
	ctx        context.Context
	e          *exchange
	headerSent bool
}

func (s *stream) Context() context.Context { return s.ctx }

// before commits before the stream's first header or message.
func (s *stream) before() error {
	md, err := s.e.commit()
	if err != nil {
		return err
	}
	if md != nil && !s.headerSent {
		s.headerSent = true
		return s.ServerStream.SetHeader(md)
	}
	s.headerSent = true
	return nil
}

func (s *stream) SendHeader(md metadata.MD) error {
	if err := s.before(); err != nil {
		return err
	}
	return s.ServerStream.SendHeader(md)
}

func (s *stream) SendMsg(m any) error {
	if err := s.before(); err != nil {
		return err
	}
	return s.ServerStream.SendMsg(m)
}

// RecvMsg receives a message, then refreshes the stream's view of its session:
// what it changed is written, and the next use reads the session again.
func (s *stream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if sess, ok := session.FromContext(s.ctx); ok {
		if err := sess.Sync(s.ctx); err != nil {
			return unavailable(err)
		}
	}
	return nil
}

package session

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/fxsession/fxsession/cache"
)

// Defaults applied by [Config] fields left at their zero value.
const (
	DefaultCookieName              = "fxsession"
	DefaultCookiePath              = "/"
	DefaultInactivityTimeout       = 3600 * time.Second
	DefaultUpdateMetadataThreshold = 60 * time.Second
	DefaultGCInterval              = 5 * time.Minute
	DefaultGCMaxPerRun             = 1000
	DefaultNamespace               = "session"
	DefaultCommitTimeout           = 5 * time.Second
	DefaultLockTTL                 = 30 * time.Second
	DefaultLockWait                = 5 * time.Second
	// DefaultMaxPayload is the size limit of one stored value (cache.DefaultMaxValueSize).
	DefaultMaxPayload = cache.DefaultMaxValueSize
)

// Never, given as a duration in [Config], switches the feature off:
// InactivityTimeout: Never means sessions never expire for inactivity;
// UpdateMetadataThreshold: Never means metadata is rewritten on every request that
// uses the session; GCInterval: Never means no background collector runs.
// Any negative duration has the same meaning.
const Never time.Duration = -1

// SecureMode says when the session cookie carries the Secure attribute.
type SecureMode uint8

const (
	// SecureAuto (the default) marks the cookie Secure when the request came over
	// TLS, or carries "X-Forwarded-Proto: https" and came from one of
	// [Config.TrustedProxies].
	SecureAuto SecureMode = iota
	// SecureAlways always marks the cookie Secure.
	SecureAlways
	// SecureNever never marks the cookie Secure (unless SameSite None or the
	// __Host- prefix require it).
	SecureNever
)

// SameSite is the SameSite attribute of the session cookie.
type SameSite uint8

const (
	// SameSiteLax (the default): the cookie goes with top-level navigations from
	// other sites, not with their sub-requests.
	SameSiteLax SameSite = iota
	// SameSiteStrict: the cookie goes only with same-site requests.
	SameSiteStrict
	// SameSiteNone: the cookie goes with every request; it forces Secure.
	SameSiteNone
)

// Config configures a [Manager]. Its zero value is a working configuration: every
// field left at zero takes the default documented on it.
type Config struct {
	// CookieName is the session cookie's name (default "fxsession"). With
	// HostPrefix the sent name is "__Host-" + CookieName.
	CookieName string
	// CookiePath is the cookie's Path attribute (default "/").
	CookiePath string
	// CookieDomain is the cookie's Domain attribute (default none: host only).
	CookieDomain string
	// CookieLifetime is the cookie's Max-Age. 0 (the default) makes it a browser
	// session cookie. A persistent cookie is refreshed whenever the session's
	// metadata is written (at most once per UpdateMetadataThreshold).
	CookieLifetime time.Duration
	// Secure says when the cookie is marked Secure (default SecureAuto).
	Secure SecureMode
	// TrustedProxies are the networks whose X-Forwarded-Proto header is believed
	// by SecureAuto. Empty (the default): the header is ignored.
	TrustedProxies []netip.Prefix
	// DisableHTTPOnly drops the HttpOnly attribute (by default the cookie is
	// HttpOnly: scripts cannot read it).
	DisableHTTPOnly bool
	// SameSite is the cookie's SameSite attribute (default SameSiteLax).
	SameSite SameSite
	// HostPrefix sends the cookie as "__Host-"+CookieName, which browsers accept
	// only when Secure, with Path "/" and no Domain: it then cannot be set or
	// overwritten by another subdomain. It forces Secure; CookiePath must be empty
	// or "/" and CookieDomain empty.
	HostPrefix bool

	// IDFrom says where requests carry the session ID (default IDFromCookie). API
	// clients that keep no cookies send it in a header: IDFromHeader, or
	// IDFromCookieOrHeader to serve browsers and API clients alike. With a
	// header, a new or renewed ID goes out in the response header
	// IDResponseHeader, and a destroyed session's is sent empty. Strict mode,
	// renewal, rotation and the size checks are the same for both; a malformed
	// header value never reaches the store.
	IDFrom IDSource
	// IDHeader is the request header that carries the ID (default
	// "X-Session-Token"). With "Authorization", the value is IDScheme, a space
	// and the ID ("Authorization: Session <ID>").
	IDHeader string
	// IDScheme is the authorization scheme when IDHeader is "Authorization"
	// (default "Session"), compared without regard to case.
	IDScheme string
	// IDResponseHeader is the response header a new or renewed ID goes out in
	// (default IDHeader, or "X-Session-Token" when IDHeader is "Authorization").
	IDResponseHeader string

	// InactivityTimeout ends a session that has not been used for this long
	// (default 3600 s; Never: no inactivity timeout). It counts from the stored
	// last activity, which lags the real one by up to UpdateMetadataThreshold.
	InactivityTimeout time.Duration
	// AbsoluteLifetime ends a session this long after it started, however active
	// (default 0: no absolute lifetime).
	AbsoluteLifetime time.Duration
	// UpdateMetadataThreshold: a request that only used the session rewrites the
	// session's metadata (its last activity) only when the stored one is at least
	// this old (default 60 s; Never: on every request that uses the session).
	UpdateMetadataThreshold time.Duration

	// GCInterval is the pause between background garbage-collection runs
	// (default 5 minutes; Never: no background collector).
	GCInterval time.Duration
	// GCMaxPerRun bounds the sessions removed by one collection run (default 1000).
	GCMaxPerRun int

	// MaxPayload bounds the encoded size of one stored value: a user value, a bag,
	// the flash bag or an extension's field (default 1 MiB). The store's own limit
	// still applies.
	MaxPayload int
	// Namespace is the cache namespace (a Sub of the store) the sessions live in
	// (default "session"), one record per session.
	Namespace string
	// CommitTimeout bounds the store writes of one commit, which run detached from
	// the request's cancellation so that a client going away loses no data
	// (default 5 s).
	CommitTimeout time.Duration

	// LockTTL is the lifetime of the per-session lock taken by [Exclusive] routes
	// (default 30 s): a process that dies holding it blocks the session at most
	// this long. Handlers running longer lose the lock's protection.
	LockTTL time.Duration
	// LockWait bounds how long an [Exclusive] route waits for its session's lock
	// (default 5 s); then the ErrorHandler answers with an error matching
	// ErrLockTimeout (the default: 503).
	LockWait time.Duration

	// RotateAfter renews a session's ID on its first request after the ID is this
	// old (OWASP's renewal timeout), keeping its data; 0 (the default) never
	// rotates. The previous ID still opens the session for RotationGrace, so
	// that requests already in flight with it are neither logged out nor given a
	// second session.
	RotateAfter time.Duration
	// RotationGrace is how long a rotated-out ID keeps working (default 30 s).
	// Renewals by RenewID (login) have no grace: the old ID dies at once.
	RotationGrace time.Duration

	// ClientAddress says whether and how a session records its client's address
	// beside its device (the User-Agent, always recorded, truncated to 200
	// bytes), at start and whenever its activity is written. Default
	// AddressNone: not recorded. See docs/security.md on privacy.
	ClientAddress AddressMode
	// AddressKey is the key of AddressHashed (at least 16 bytes; required
	// with it). Keep it secret and the same across processes.
	AddressKey []byte

	// MaxSessionsPerUser caps the sessions one user may hold (0, the default: no
	// cap). A user is a tag starting with UserTagPrefix; when a session gains
	// such a tag (or starts with it) and the user then has more sessions than the
	// cap, the least recently used others are destroyed (reason "cap"). The
	// check runs under a store lock, so concurrent logins in several processes
	// never leave more than the cap.
	MaxSessionsPerUser int
	// UserTagPrefix marks the tags that name a user (default "user:"), for
	// MaxSessionsPerUser and [Manager.UserSessions].
	UserTagPrefix string

	// EventBuffer is how many lifecycle events wait for the listeners (default
	// 1024). A listener that cannot keep up never blocks a request: events
	// beyond the buffer are dropped, and counted in the log.
	EventBuffer int

	// MeterProvider switches on OpenTelemetry metrics, named "fxsession.…"
	// (fxsession_… in Prometheus): sessions started, resumed, renewed and
	// destroyed (by reason), expired; commits and failed commits; Update
	// conflicts and retries and objects decoded (package scope, by type);
	// bytes read and written; store latency by operation and backend.
	// docs/operations.md lists them with the queries a dashboard needs. Nil,
	// the default: off, at the cost of a nil check. [Module] takes a
	// metric.MeterProvider from the fx graph when this is nil.
	MeterProvider metric.MeterProvider
	// TracerProvider switches on OpenTelemetry traces: a span for each resume
	// (fxsession.session.resume), for each commit (fxsession.session.commit)
	// and for each store call (fxsession.store.read, …), children of the span
	// of the context they are given (the request's, for a request's session).
	// Nil, the default: off, at the cost of a nil check. [Module] takes a
	// trace.TracerProvider from the fx graph when this is nil.
	TracerProvider trace.TracerProvider

	// Development makes misuse fail loudly: using the session on a [Stateless]
	// route returns ErrStateless instead of logging a warning.
	Development bool

	// ErrorHandler answers a request whose session could not be resumed or
	// committed before its response began (the store failed). The default answers
	// 503 with a short text. The error is logged either way.
	ErrorHandler func(w http.ResponseWriter, r *http.Request, err error)
	// Logger receives the session's logs (default slog.Default()).
	Logger *slog.Logger
	// Now is the clock (default time.Now); tests set it to move time.
	Now func() time.Time
}

// IDSource says where requests carry the session ID.
type IDSource uint8

const (
	// IDFromCookie (the default): the session cookie.
	IDFromCookie IDSource = iota
	// IDFromHeader: a request header (Config.IDHeader), for API clients.
	IDFromHeader
	// IDFromCookieOrHeader: either; a request that carries both uses the
	// header's. A response answers on the channel the request used, and on both
	// when it starts a session for a request that had no ID.
	IDFromCookieOrHeader
)

// Defaults of the ID header.
const (
	DefaultIDHeader = "X-Session-Token"
	DefaultIDScheme = "Session"
)

// AddressMode says how a session records its client's address.
type AddressMode uint8

const (
	// AddressNone (the default) records no address.
	AddressNone AddressMode = iota
	// AddressTruncated records the network, not the host: the /24 of an IPv4
	// address, the /48 of an IPv6 one.
	AddressTruncated
	// AddressHashed records an HMAC-SHA-256 of the address under AddressKey
	// (16 hex digits): equal addresses compare equal, and the address cannot be
	// read back.
	AddressHashed
	// AddressFull records the whole address.
	AddressFull
)

// Defaults of the features above.
const (
	DefaultRotationGrace = 30 * time.Second
	DefaultUserTagPrefix = "user:"
	DefaultEventBuffer   = 1024
)

// settings is a Config with its defaults applied and validated.
type settings struct {
	cookieName     string // the name sent, prefix included
	cookiePath     string
	cookieDomain   string
	cookieMaxAge   int
	cookieLifetime time.Duration
	secure         SecureMode
	forceSecure    bool
	trusted        []netip.Prefix
	httpOnly       bool
	sameSite       http.SameSite
	timeout        time.Duration // 0: never
	absolute       time.Duration // 0: none
	threshold      time.Duration // 0: always
	gcInterval     time.Duration // 0: no collector
	gcMax          int
	maxPayload     int
	namespace      string
	commitTimeout  time.Duration
	lockTTL        time.Duration
	lockWait       time.Duration
	development    bool
	idCookie       bool   // the ID may come in the cookie
	idHeader       string // the request header it may come in ("": none)
	idScheme       string // the Authorization scheme ("": the header holds the bare ID)
	idRespHeader   string
	rotateAfter    time.Duration
	rotationGrace  time.Duration
	address        AddressMode
	addressKey     []byte
	maxPerUser     int
	userPrefix     string
	eventBuffer    int
	meterProvider  metric.MeterProvider // nil: no metrics
	tracerProvider trace.TracerProvider // nil: no traces
	errorHandler   func(http.ResponseWriter, *http.Request, error)
	logger         *slog.Logger
	now            func() time.Time
}

// ErrConfig is wrapped by every configuration error of [New] and [Module].
var ErrConfig = errors.New("session: invalid config")

func (c Config) settings() (settings, error) {
	s := settings{
		cookieName:     c.CookieName,
		cookiePath:     c.CookiePath,
		cookieDomain:   c.CookieDomain,
		cookieLifetime: c.CookieLifetime,
		secure:         c.Secure,
		trusted:        c.TrustedProxies,
		httpOnly:       !c.DisableHTTPOnly,
		development:    c.Development,
		meterProvider:  c.MeterProvider,
		tracerProvider: c.TracerProvider,
		errorHandler:   c.ErrorHandler,
		logger:         c.Logger,
		now:            c.Now,
	}
	if s.cookieName == "" {
		s.cookieName = DefaultCookieName
	}
	if !validCookieName(s.cookieName) {
		return s, fmt.Errorf("%w: cookie name %q is not an RFC 6265 token", ErrConfig, s.cookieName)
	}
	if s.cookiePath == "" {
		s.cookiePath = DefaultCookiePath
	}
	if c.HostPrefix {
		if s.cookiePath != "/" || s.cookieDomain != "" {
			return s, fmt.Errorf("%w: HostPrefix needs CookiePath \"/\" and no CookieDomain", ErrConfig)
		}
		s.cookieName = "__Host-" + s.cookieName
		s.forceSecure = true
	}
	if s.secure > SecureNever {
		return s, fmt.Errorf("%w: unknown SecureMode %d", ErrConfig, s.secure)
	}
	switch c.SameSite {
	case SameSiteLax:
		s.sameSite = http.SameSiteLaxMode
	case SameSiteStrict:
		s.sameSite = http.SameSiteStrictMode
	case SameSiteNone:
		s.sameSite = http.SameSiteNoneMode
		s.forceSecure = true
	default:
		return s, fmt.Errorf("%w: unknown SameSite %d", ErrConfig, c.SameSite)
	}
	if c.CookieLifetime < 0 {
		return s, fmt.Errorf("%w: negative CookieLifetime %v", ErrConfig, c.CookieLifetime)
	}
	if c.CookieLifetime > 0 {
		s.cookieMaxAge = max(1, int(c.CookieLifetime/time.Second))
	}
	switch {
	case c.InactivityTimeout == 0:
		s.timeout = DefaultInactivityTimeout
	case c.InactivityTimeout > 0:
		s.timeout = c.InactivityTimeout
	}
	if c.AbsoluteLifetime < 0 {
		return s, fmt.Errorf("%w: negative AbsoluteLifetime %v", ErrConfig, c.AbsoluteLifetime)
	}
	s.absolute = c.AbsoluteLifetime
	switch {
	case c.UpdateMetadataThreshold == 0:
		s.threshold = DefaultUpdateMetadataThreshold
	case c.UpdateMetadataThreshold > 0:
		s.threshold = c.UpdateMetadataThreshold
	}
	switch {
	case c.GCInterval == 0:
		s.gcInterval = DefaultGCInterval
	case c.GCInterval > 0:
		s.gcInterval = c.GCInterval
	}
	s.gcMax = c.GCMaxPerRun
	if s.gcMax == 0 {
		s.gcMax = DefaultGCMaxPerRun
	}
	if s.gcMax < 0 {
		return s, fmt.Errorf("%w: negative GCMaxPerRun %d", ErrConfig, s.gcMax)
	}
	s.maxPayload = c.MaxPayload
	if s.maxPayload == 0 {
		s.maxPayload = DefaultMaxPayload
	}
	if s.maxPayload < 0 {
		return s, fmt.Errorf("%w: negative MaxPayload %d", ErrConfig, s.maxPayload)
	}
	s.namespace = c.Namespace
	if s.namespace == "" {
		s.namespace = DefaultNamespace
	}
	if err := cache.ValidateKey(s.namespace); err != nil {
		return s, fmt.Errorf("%w: namespace: %w", ErrConfig, err)
	}
	s.commitTimeout = c.CommitTimeout
	if s.commitTimeout <= 0 {
		s.commitTimeout = DefaultCommitTimeout
	}
	s.lockTTL, s.lockWait = c.LockTTL, c.LockWait
	if s.lockTTL <= 0 {
		s.lockTTL = DefaultLockTTL
	}
	if s.lockWait <= 0 {
		s.lockWait = DefaultLockWait
	}
	switch c.IDFrom {
	case IDFromCookie:
		s.idCookie = true
	case IDFromHeader, IDFromCookieOrHeader:
		s.idCookie = c.IDFrom == IDFromCookieOrHeader
		s.idHeader = http.CanonicalHeaderKey(c.IDHeader)
		if s.idHeader == "" {
			s.idHeader = DefaultIDHeader
		}
		if !validCookieName(s.idHeader) {
			return s, fmt.Errorf("%w: IDHeader %q is not a header name", ErrConfig, c.IDHeader)
		}
		s.idRespHeader = http.CanonicalHeaderKey(c.IDResponseHeader)
		if s.idHeader == "Authorization" {
			s.idScheme = c.IDScheme
			if s.idScheme == "" {
				s.idScheme = DefaultIDScheme
			}
			if s.idRespHeader == "" {
				s.idRespHeader = DefaultIDHeader
			}
		}
		if s.idRespHeader == "" {
			s.idRespHeader = s.idHeader
		}
		if !validCookieName(s.idRespHeader) {
			return s, fmt.Errorf("%w: IDResponseHeader %q is not a header name", ErrConfig, c.IDResponseHeader)
		}
	default:
		return s, fmt.Errorf("%w: unknown IDSource %d", ErrConfig, c.IDFrom)
	}
	if c.RotateAfter < 0 || c.RotationGrace < 0 {
		return s, fmt.Errorf("%w: negative RotateAfter or RotationGrace", ErrConfig)
	}
	s.rotateAfter, s.rotationGrace = c.RotateAfter, c.RotationGrace
	if s.rotationGrace == 0 {
		s.rotationGrace = DefaultRotationGrace
	}
	if c.ClientAddress > AddressFull {
		return s, fmt.Errorf("%w: unknown AddressMode %d", ErrConfig, c.ClientAddress)
	}
	if c.ClientAddress == AddressHashed && len(c.AddressKey) < 16 {
		return s, fmt.Errorf("%w: AddressHashed needs an AddressKey of at least 16 bytes", ErrConfig)
	}
	s.address, s.addressKey = c.ClientAddress, c.AddressKey
	if c.MaxSessionsPerUser < 0 {
		return s, fmt.Errorf("%w: negative MaxSessionsPerUser %d", ErrConfig, c.MaxSessionsPerUser)
	}
	s.maxPerUser, s.userPrefix = c.MaxSessionsPerUser, c.UserTagPrefix
	if s.userPrefix == "" {
		s.userPrefix = DefaultUserTagPrefix
	}
	s.eventBuffer = c.EventBuffer
	if s.eventBuffer <= 0 {
		s.eventBuffer = DefaultEventBuffer
	}
	if s.logger == nil {
		s.logger = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s, nil
}

// tokenChar marks the bytes allowed in an RFC 6265 cookie name (an RFC 2616 token).
// It is a constant lookup table.
var tokenChar = func() (t [256]bool) {
	for c := 0x21; c < 0x7f; c++ {
		t[c] = true
	}
	for _, c := range "()<>@,;:\\\"/[]?={}" {
		t[c] = false
	}
	return t
}()

func validCookieName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		if !tokenChar[name[i]] {
			return false
		}
	}
	return true
}

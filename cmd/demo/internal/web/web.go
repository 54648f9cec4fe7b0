// Package web is the demo shop's HTTP layer: HTML pages and a JSON API over the
// session-scoped basket.
package web

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.uber.org/fx"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cmd/demo/internal/shop"
	"github.com/fxsession/fxsession/scope"
	"github.com/fxsession/fxsession/session"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed assets
var assetFS embed.FS

// MaxBody bounds a JSON request body; larger ones are answered 413.
const MaxBody = 4 << 10

// UserKey is the session value (Session.Put) holding the signed-in user's name.
const UserKey = "user"

// validUser is what a user name may look like: it becomes a session tag.
var validUser = regexp.MustCompile(`^[A-Za-z0-9_.@-]{1,40}$`)

// RememberFor is the lifetime of a session signed in with "Remember me": its
// own inactivity timeout and its persistent cookie's Max-Age.
const RememberFor = 30 * 24 * time.Hour

// ReasonRevoked is the reason of a session ended from its user's sessions
// page (the lifecycle event's Reason).
const ReasonRevoked = "revoked"

// Telemetry is what the server exposes and traces with.
type Telemetry struct {
	// Metrics serves GET /metrics (Prometheus text); nil: an empty exposition.
	Metrics http.Handler
	// Tracer, when not nil, gives every request a server span, the parent of
	// the session's spans.
	Tracer trace.TracerProvider
}

// Params are the server's dependencies, filled by fx.
type Params struct {
	fx.In
	Basket    scope.Handle[*shop.Basket]
	Catalog   *shop.Catalog
	Sessions  *session.Manager
	Telemetry *Telemetry   `optional:"true"`
	Logger    *slog.Logger `optional:"true"`
}

// Server serves the shop.
type Server struct {
	basket   scope.Handle[*shop.Basket]
	catalog  *shop.Catalog
	sessions *session.Manager
	log      *slog.Logger
	now      func() time.Time
	pages    map[string]*template.Template
	handler  http.Handler
}

// New builds the server and its routes.
func New(p Params) (*Server, error) {
	s := &Server{basket: p.Basket, catalog: p.Catalog, sessions: p.Sessions, log: p.Logger, now: time.Now}
	if s.log == nil {
		s.log = slog.Default()
	}
	funcs := template.FuncMap{
		"price": func(cents int64) string { return fmt.Sprintf("€%d.%02d", cents/100, cents%100) },
		"mul":   func(q int, c int64) int64 { return int64(q) * c },
	}
	s.pages = map[string]*template.Template{}
	for _, page := range []string{"catalog", "basket", "sessions", "error"} {
		t, err := template.New("layout").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+page+".html")
		if err != nil {
			return nil, fmt.Errorf("web: template %s: %w", page, err)
		}
		s.pages[page] = t
	}
	assets, err := fs.Sub(assetFS, "assets")
	if err != nil {
		return nil, err
	}

	app := http.NewServeMux()
	app.HandleFunc("GET /{$}", s.catalogPage)
	app.HandleFunc("GET /basket", s.basketPage)
	app.HandleFunc("POST /basket/items", s.addForm)
	app.HandleFunc("POST /basket/items/{sku}", s.updateForm)
	app.HandleFunc("POST /basket/items/{sku}/delete", s.removeForm)
	app.HandleFunc("POST /login", s.loginForm)
	app.HandleFunc("POST /logout", s.logoutForm)
	app.HandleFunc("GET /sessions", s.sessionsPage)
	app.HandleFunc("POST /sessions/{id}/revoke", s.revokeForm)
	app.HandleFunc("POST /sessions/logout-others", s.logoutOthersForm)
	app.Handle("GET /api/products", session.Stateless(http.HandlerFunc(s.apiProducts)))
	app.Handle("GET /api/basket", session.ReadOnly(http.HandlerFunc(s.apiBasket)))
	app.HandleFunc("POST /api/basket/items", s.apiAdd)
	app.HandleFunc("DELETE /api/basket/items/{sku}", s.apiRemove)
	app.HandleFunc("POST /api/login", s.apiLogin)
	app.HandleFunc("POST /api/logout", s.apiLogout)
	app.HandleFunc("POST /api/logout-everywhere", s.apiLogoutEverywhere)
	app.HandleFunc("GET /api/sessions", s.apiSessions)
	app.HandleFunc("DELETE /api/sessions/{id}", s.apiRevoke)
	app.HandleFunc("POST /api/logout-others", s.apiLogoutOthers)
	app.HandleFunc("/", s.notFound)

	root := http.NewServeMux()
	// Neither the health check, the metrics nor the static files ever touch a
	// session.
	root.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	var metrics http.Handler = http.HandlerFunc(noMetrics)
	if p.Telemetry != nil && p.Telemetry.Metrics != nil {
		metrics = p.Telemetry.Metrics
	}
	root.Handle("GET /metrics", metrics)
	root.Handle("GET /assets/", http.StripPrefix("/assets/", http.FileServerFS(assets)))
	root.Handle("/", p.Sessions.Middleware(app))
	s.handler = root
	if p.Telemetry != nil && p.Telemetry.Tracer != nil {
		s.handler = traced(p.Telemetry.Tracer.Tracer("github.com/fxsession/fxsession/cmd/demo"), root, app)
	}
	return s, nil
}

// noMetrics is GET /metrics without telemetry: an empty exposition.
func noMetrics(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
}

// ServeHTTP serves the shop.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// ---- pages ----

type flash struct{ Type, Text string }

type pageData struct {
	Title          string
	Page           string
	Count          int
	User           string
	Flashes        []flash
	SessionStarted bool
	Products       []*shop.Product
	Lines          []shop.LineItem
	Total          int64
	Message        string
	Sessions       []sessionView
}

// common fills the header: basket count, user, flashes (consumed).
func (s *Server) common(ctx context.Context, d *pageData) (*shop.Basket, error) {
	b, err := s.basket.Get(ctx)
	if err != nil {
		return nil, err
	}
	d.Count = b.Count()
	sess, _ := session.FromContext(ctx)
	started, err := sess.IsStarted(ctx)
	if err != nil {
		return nil, err
	}
	d.SessionStarted = started
	if !started {
		return b, nil
	}
	d.User = s.user(ctx, sess)
	all, err := sess.Flashes().All(ctx)
	if err != nil {
		return nil, err
	}
	for _, typ := range []string{"success", "info", "error"} {
		for _, m := range all[typ] {
			d.Flashes = append(d.Flashes, flash{typ, m})
		}
	}
	return b, nil
}

func (s *Server) user(ctx context.Context, sess *session.Session) string {
	var u string
	if err := sess.Get(ctx, UserKey, &u); err != nil && !errors.Is(err, session.ErrNotFound) && !errors.Is(err, session.ErrNotStarted) {
		s.log.WarnContext(ctx, "reading the user", "err", err)
	}
	return u
}

func (s *Server) catalogPage(w http.ResponseWriter, r *http.Request) {
	d := pageData{Title: "Catalog", Page: "catalog"}
	if _, err := s.common(r.Context(), &d); err != nil {
		s.pageError(w, r, err)
		return
	}
	products, err := s.catalog.All(r.Context())
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	d.Products = products
	s.render(w, r, http.StatusOK, "catalog", &d)
}

func (s *Server) basketPage(w http.ResponseWriter, r *http.Request) {
	d := pageData{Title: "Basket", Page: "basket"}
	b, err := s.common(r.Context(), &d)
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	d.Lines, d.Total = b.Lines(), b.TotalCents()
	s.render(w, r, http.StatusOK, "basket", &d)
}

func (s *Server) addForm(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, MaxBody)
	qty := 1
	if q := r.FormValue("qty"); q != "" {
		n, err := strconv.Atoi(strings.TrimSpace(q))
		if err != nil {
			s.refuse(w, r, errNotANumber, backTo(r, "/"))
			return
		}
		qty = n
	}
	p, err := s.add(r.Context(), r.FormValue("sku"), qty, nil)
	if err != nil {
		s.refuse(w, r, err, backTo(r, "/"))
		return
	}
	s.flash(r.Context(), "success", fmt.Sprintf("Added %d × %s", qty, p.Name))
	http.Redirect(w, r, "/basket", http.StatusSeeOther)
}

// updateForm sets the quantity of a line of the basket.
func (s *Server) updateForm(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, MaxBody)
	qty, err := strconv.Atoi(strings.TrimSpace(r.FormValue("qty")))
	if err != nil {
		s.refuse(w, r, errNotANumber, "/basket")
		return
	}
	var p *shop.Product
	err = s.basket.Update(r.Context(), func(b *shop.Basket) error {
		var err error
		p, err = b.SetQty(r.PathValue("sku"), qty)
		return err
	})
	if err != nil {
		s.refuse(w, r, err, "/basket")
		return
	}
	s.flash(r.Context(), "success", fmt.Sprintf("%s: quantity now %d", p.Name, qty))
	http.Redirect(w, r, "/basket", http.StatusSeeOther)
}

func (s *Server) removeForm(w http.ResponseWriter, r *http.Request) {
	name, err := s.remove(r.Context(), r.PathValue("sku"), nil)
	if err != nil {
		s.refuse(w, r, err, "/basket")
		return
	}
	if name != "" {
		s.flash(r.Context(), "info", "Removed "+name)
	}
	http.Redirect(w, r, "/basket", http.StatusSeeOther)
}

func (s *Server) loginForm(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, MaxBody)
	user := strings.TrimSpace(r.FormValue("user"))
	remember := r.FormValue("remember") != ""
	if err := s.login(r.Context(), user, remember); err != nil {
		s.refuse(w, r, err, backTo(r, "/"))
		return
	}
	msg := "Welcome, " + user
	if remember {
		msg += ". This browser stays signed in for 30 days."
	}
	s.flash(r.Context(), "success", msg)
	http.Redirect(w, r, backTo(r, "/"), http.StatusSeeOther)
}

func (s *Server) logoutForm(w http.ResponseWriter, r *http.Request) {
	if err := s.logout(r.Context()); err != nil {
		s.pageError(w, r, err)
		return
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// refuse answers a form whose change was refused: back to the page the form
// was on, with the reason as a flash message. The message needs the session,
// which starts here if it had not. Failures of the store get an error page.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, err error, back string) {
	status, msg := classify(err)
	if status >= 500 || status == http.StatusConflict {
		s.pageError(w, r, err)
		return
	}
	ctx := r.Context()
	sess, _ := session.FromContext(ctx)
	if started, serr := sess.IsStarted(ctx); serr != nil || !started {
		if serr == nil {
			serr = sess.Start(ctx)
		}
		if serr != nil {
			s.pageError(w, r, serr)
			return
		}
	}
	s.flash(ctx, "error", msg)
	http.Redirect(w, r, back, http.StatusSeeOther)
}

// backTo is the page a form was sent from (the Referer, when it is one of this
// site's pages), or fallback.
func backTo(r *http.Request, fallback string) string {
	u, err := url.Parse(r.Referer())
	if err != nil || u.Host != r.Host || !strings.HasPrefix(u.Path, "/") || strings.HasPrefix(u.Path, "//") {
		return fallback
	}
	return u.RequestURI()
}

func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/api/") {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such route"})
		return
	}
	s.pageStatus(w, r, http.StatusNotFound, "Not found", "There is no page here.")
}

func (s *Server) flash(ctx context.Context, typ, msg string) {
	sess, _ := session.FromContext(ctx)
	if err := sess.Flashes().Add(ctx, typ, msg); err != nil {
		s.log.WarnContext(ctx, "adding a flash message", "err", err)
	}
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, page string, d *pageData) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := s.pages[page].ExecuteTemplate(w, "layout", d); err != nil {
		s.log.ErrorContext(r.Context(), "rendering a page", "page", page, "err", err)
	}
}

// pageStatus renders the error page, with the visitor's basket, user and
// flash messages in the header as on every page (unless reading them is what
// failed).
func (s *Server) pageStatus(w http.ResponseWriter, r *http.Request, status int, title, msg string) {
	d := pageData{Title: title, Page: "error", Message: msg}
	if status != http.StatusServiceUnavailable {
		if _, err := s.common(r.Context(), &d); err != nil {
			s.log.WarnContext(r.Context(), "the error page without the visitor's state", "err", err)
			d = pageData{Title: title, Page: "error", Message: msg}
		}
	}
	s.render(w, r, status, "error", &d)
}

func (s *Server) pageError(w http.ResponseWriter, r *http.Request, err error) {
	status, msg := classify(err)
	if status >= 500 {
		s.log.ErrorContext(r.Context(), "request failed", "path", r.URL.Path, "err", err)
	}
	s.pageStatus(w, r, status, http.StatusText(status), msg)
}

// ---- JSON API ----

type apiItem struct {
	SKU        string `json:"sku"`
	Name       string `json:"name"`
	Qty        int    `json:"qty"`
	PriceCents int64  `json:"price_cents"`
}

type apiBasket struct {
	Items      []apiItem `json:"items"`
	TotalCents int64     `json:"total_cents"`
}

func basketJSON(b *shop.Basket) apiBasket {
	out := apiBasket{Items: []apiItem{}, TotalCents: b.TotalCents()}
	for _, it := range b.Lines() {
		out.Items = append(out.Items, apiItem{it.Product.SKU, it.Product.Name, it.Qty, it.Product.PriceCents})
	}
	return out
}

func (s *Server) apiProducts(w http.ResponseWriter, r *http.Request) {
	products, err := s.catalog.All(r.Context())
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	type product struct {
		SKU        string `json:"sku"`
		Name       string `json:"name"`
		PriceCents int64  `json:"price_cents"`
	}
	out := make([]product, 0, len(products))
	for _, p := range products {
		out = append(out, product{p.SKU, p.Name, p.PriceCents})
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) apiBasket(w http.ResponseWriter, r *http.Request) {
	b, err := s.basket.Get(r.Context())
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, basketJSON(b))
}

func (s *Server) apiAdd(w http.ResponseWriter, r *http.Request) {
	var body struct {
		SKU string `json:"sku"`
		Qty *int   `json:"qty"`
	}
	if err := decodeJSON(w, r, &body); err != nil {
		s.apiError(w, r, err)
		return
	}
	qty := 1
	if body.Qty != nil {
		qty = *body.Qty
	}
	if body.SKU == "" {
		s.apiError(w, r, fmt.Errorf("%w: sku is required", errBadRequest))
		return
	}
	// The answer is the basket as the Update left it, taken inside the Update:
	// a Get afterwards would hand the object out again and make the commit
	// compare it with what the Update stored.
	var answer apiBasket
	if _, err := s.add(r.Context(), body.SKU, qty, func(b *shop.Basket) { answer = basketJSON(b) }); err != nil {
		s.apiError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, answer)
}

func (s *Server) apiRemove(w http.ResponseWriter, r *http.Request) {
	var answer apiBasket
	if _, err := s.remove(r.Context(), r.PathValue("sku"), func(b *shop.Basket) { answer = basketJSON(b) }); err != nil {
		s.apiError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, answer)
}

func (s *Server) apiLogin(w http.ResponseWriter, r *http.Request) {
	var body struct {
		User     string `json:"user"`
		Remember bool   `json:"remember"`
	}
	if err := decodeJSON(w, r, &body); err != nil {
		s.apiError(w, r, err)
		return
	}
	if err := s.login(r.Context(), body.User, body.Remember); err != nil {
		s.apiError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"user": body.User, "remember": body.Remember})
}

func (s *Server) apiLogout(w http.ResponseWriter, r *http.Request) {
	if err := s.logout(r.Context()); err != nil {
		s.apiError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"logged_out": true})
}

func (s *Server) apiLogoutEverywhere(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	sess, user, err := s.signedIn(ctx)
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	// The others through the user's tag, this one through the request's
	// session, which also expires its cookie.
	n, err := s.sessions.DestroyByTag(ctx, s.sessions.UserTag(user), "logout everywhere", sess.Ref())
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	if err := sess.Destroy(ctx, "logout everywhere"); err != nil {
		s.apiError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"sessions_ended": n + 1})
}

// ---- the shop's actions, shared by pages and API ----

// add puts qty of sku into the basket atomically: concurrent adds of one visitor
// lose nothing. The first add starts the session (Items is an autostart field).
// add puts qty of sku in the basket and returns the product; view, when not
// nil, sees the basket as changed (it runs again if the Update retries).
func (s *Server) add(ctx context.Context, sku string, qty int, view func(*shop.Basket)) (*shop.Product, error) {
	var added *shop.Product
	err := s.basket.Update(ctx, func(b *shop.Basket) error {
		p, err := b.Add(ctx, sku, qty)
		added = p
		if err == nil && view != nil {
			view(b)
		}
		return err
	})
	return added, err
}

// remove takes sku out of the basket and returns the product's name ("" if it
// was not there).
func (s *Server) remove(ctx context.Context, sku string, view func(*shop.Basket)) (string, error) {
	name := ""
	err := s.basket.Update(ctx, func(b *shop.Basket) error {
		name = ""
		for _, it := range b.Lines() {
			if it.Product.SKU == sku {
				name = it.Product.Name
			}
		}
		b.Remove(sku)
		if view != nil {
			view(b)
		}
		return nil
	})
	return name, err
}

// login renews the session ID (no fixation), remembers the user and tags the
// session with the user's tag (Manager.UserTag: the user's sessions page, the
// per-user cap); the basket stays. remember gives the session a lifetime of
// RememberFor and a persistent cookie; without it the session has the shop's
// inactivity timeout and a browser-session cookie.
func (s *Server) login(ctx context.Context, user string, remember bool) error {
	if !validUser.MatchString(user) {
		return errBadUser
	}
	sess, _ := session.FromContext(ctx)
	if err := sess.RenewID(ctx); err != nil {
		return err
	}
	if old := s.user(ctx, sess); old != "" && old != user {
		if err := sess.RemoveTag(ctx, s.sessions.UserTag(old)); err != nil {
			return err
		}
	}
	if err := sess.Put(ctx, UserKey, user); err != nil {
		return err
	}
	if err := sess.AddTag(ctx, s.sessions.UserTag(user)); err != nil {
		return err
	}
	var lifetime time.Duration
	if remember {
		lifetime = RememberFor
	}
	return sess.SetLifetime(ctx, lifetime)
}

func (s *Server) logout(ctx context.Context) error {
	sess, _ := session.FromContext(ctx)
	return sess.Destroy(ctx, "logout")
}

// ---- errors ----

var errBadRequest = errors.New("bad request")

// errBadUser: a user name that cannot be one.
var errBadUser = fmt.Errorf("%w: a user name is 1 to 40 letters, digits or _.@-", errBadRequest)

// errNotANumber: a form's quantity is not a number.
var errNotANumber = fmt.Errorf("%w: the quantity is not a whole number", errBadRequest)

// errNotSignedIn: the route needs a signed-in user.
var errNotSignedIn = errors.New("not signed in")

// errNoSuchSession: the session to revoke is not one of the user's (or has
// ended).
var errNoSuchSession = errors.New("no such session")

// classify maps an error to a status code and a message a person understands.
func classify(err error) (int, string) {
	var maxErr *http.MaxBytesError
	switch {
	case errors.As(err, &maxErr):
		return http.StatusRequestEntityTooLarge, fmt.Sprintf("The request is larger than the %d bytes allowed.", maxErr.Limit)
	case errors.Is(err, shop.ErrUnknownProduct):
		return http.StatusNotFound, "Sorry, that product is not in our catalog (any more)."
	case errors.Is(err, shop.ErrNotInBasket):
		return http.StatusNotFound, "That product is no longer in your basket."
	case errors.Is(err, errNotANumber):
		return http.StatusBadRequest, "Please enter the quantity as a whole number, such as 2."
	case errors.Is(err, errNotSignedIn):
		return http.StatusUnauthorized, "Please sign in first."
	case errors.Is(err, errNoSuchSession):
		return http.StatusNotFound, "That is not one of your sessions, or it has already ended."
	case errors.Is(err, errBadUser):
		return http.StatusBadRequest, "A name is 1 to 40 letters or digits (and _ . @ -), without spaces."
	case errors.Is(err, shop.ErrBadQuantity):
		return http.StatusBadRequest, fmt.Sprintf("Please choose a quantity from 1 to %d.", shop.MaxAddQty)
	case errors.Is(err, shop.ErrBadLineQuantity):
		return http.StatusBadRequest, fmt.Sprintf("Please choose a quantity from 1 to %d, or remove the product.", shop.MaxLineQty)
	case errors.Is(err, shop.ErrTooMany):
		return http.StatusBadRequest, fmt.Sprintf("Your basket can hold at most %d of one product.", shop.MaxLineQty)
	case errors.Is(err, shop.ErrBasketFull):
		return http.StatusBadRequest, fmt.Sprintf("Your basket is full: it holds at most %d different products.", shop.MaxLines)
	case errors.Is(err, cache.ErrValueTooLarge):
		return http.StatusBadRequest, "Your basket has grown too large to keep."
	case errors.Is(err, errBadRequest):
		return http.StatusBadRequest, strings.TrimPrefix(err.Error(), errBadRequest.Error()+": ")
	case errors.Is(err, scope.ErrConflict):
		return http.StatusConflict, "The basket changed too often at once; please try again."
	case errors.Is(err, cache.ErrUnavailable):
		return http.StatusServiceUnavailable, "The session store is unavailable; please try again shortly."
	}
	return http.StatusInternalServerError, "Something went wrong on our side."
}

// SessionError answers a request whose session could not be loaded or saved
// (session.Config.ErrorHandler): JSON on API routes, text elsewhere, with the
// status that fits the cause.
func SessionError(w http.ResponseWriter, r *http.Request, err error) {
	status, msg := http.StatusServiceUnavailable, "the session store is unavailable; try again shortly"
	switch {
	case errors.Is(err, cache.ErrValueTooLarge):
		status, msg = http.StatusRequestEntityTooLarge, "the session grew too large"
	case errors.Is(err, session.ErrLockTimeout):
		msg = "the session is busy; try again"
	}
	if strings.HasPrefix(r.URL.Path, "/api/") {
		writeJSON(w, status, map[string]string{"error": msg})
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	io.WriteString(w, msg+"\n")
}

func (s *Server) apiError(w http.ResponseWriter, r *http.Request, err error) {
	status, msg := classify(err)
	if status >= 500 {
		s.log.ErrorContext(r.Context(), "request failed", "path", r.URL.Path, "err", err)
	}
	writeJSON(w, status, map[string]string{"error": msg})
}

func decodeJSON(w http.ResponseWriter, r *http.Request, dst any) error {
	r.Body = http.MaxBytesReader(w, r.Body, MaxBody)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		var maxErr *http.MaxBytesError
		if errors.As(err, &maxErr) {
			return err
		}
		return fmt.Errorf("%w: malformed JSON: %v", errBadRequest, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: malformed JSON: trailing data", errBadRequest)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

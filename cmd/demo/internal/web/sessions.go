package web

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/fxsession/fxsession/session"
)

// The signed-in user's sessions ("Sessions" on GitHub): where the user is
// signed in, each revocable, and all but this one at once. A session is named
// by its Ref, a public handle that does not open it; the session ID never
// leaves its cookie.

// apiSession is one session of GET /api/sessions.
type apiSession struct {
	ID       string    `json:"id"` // the session's Ref, never its ID
	Created  time.Time `json:"created"`
	LastSeen time.Time `json:"last_seen"`
	Device   string    `json:"device"` // the User-Agent it was last used with
	Current  bool      `json:"current"`
}

// sessionView is one session on the sessions page.
type sessionView struct {
	apiSession
	Name     string // "Chrome on Linux"
	Since    string // when it was signed in, for people
	Seen     string // "just now", "5 minutes ago"
	Remember bool   // signed in with "Remember me"
}

// signedIn returns the request's session and its user; errNotSignedIn when
// there is none.
func (s *Server) signedIn(ctx context.Context) (*session.Session, string, error) {
	sess, _ := session.FromContext(ctx)
	started, err := sess.IsStarted(ctx)
	if err != nil {
		return nil, "", err
	}
	if !started {
		return nil, "", errNotSignedIn
	}
	user := s.user(ctx, sess)
	if user == "" {
		return nil, "", errNotSignedIn
	}
	return sess, user, nil
}

// userSessions lists the sessions of user: this one first, then the most
// recently used. The current session's last use is now.
func (s *Server) userSessions(ctx context.Context, sess *session.Session, user string) ([]sessionView, error) {
	now := s.now()
	var out []sessionView
	for md, err := range s.sessions.UserSessions(ctx, user) {
		if err != nil {
			return nil, err
		}
		v := sessionView{apiSession: apiSession{
			ID:       md.Ref,
			Created:  md.Created.UTC(),
			LastSeen: md.LastUsed.UTC(),
			Device:   md.Device,
			Current:  md.Ref == sess.Ref(),
		}, Remember: md.Lifetime > 0}
		if v.Current {
			v.LastSeen = now.UTC()
		}
		v.Name = deviceName(v.Device)
		v.Since = v.Created.Format("2 Jan 2006, 15:04 UTC")
		v.Seen = ago(now, v.LastSeen)
		out = append(out, v)
	}
	slices.SortStableFunc(out, func(a, b sessionView) int {
		if a.Current != b.Current {
			if a.Current {
				return -1
			}
			return 1
		}
		return cmp.Or(b.LastSeen.Compare(a.LastSeen), strings.Compare(a.ID, b.ID))
	})
	return out, nil
}

func (s *Server) sessionsPage(w http.ResponseWriter, r *http.Request) {
	d := pageData{Title: "Your sessions", Page: "sessions"}
	if _, err := s.common(r.Context(), &d); err != nil {
		s.pageError(w, r, err)
		return
	}
	if d.User != "" {
		sess, _ := session.FromContext(r.Context())
		list, err := s.userSessions(r.Context(), sess, d.User)
		if err != nil {
			s.pageError(w, r, err)
			return
		}
		d.Sessions = list
	}
	s.render(w, r, http.StatusOK, "sessions", &d)
}

func (s *Server) apiSessions(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	sess, user, err := s.signedIn(ctx)
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	list, err := s.userSessions(ctx, sess, user)
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	out := make([]apiSession, 0, len(list))
	for _, v := range list {
		out = append(out, v.apiSession)
	}
	writeJSON(w, http.StatusOK, out)
}

// revoke ends the session ref of the signed-in user: errNoSuchSession unless
// it is one of theirs (whatever ref names). It returns what the session was;
// when it is the request's own session, the response expires its cookie.
func (s *Server) revoke(ctx context.Context, ref string) (sessionView, error) {
	sess, user, err := s.signedIn(ctx)
	if err != nil {
		return sessionView{}, err
	}
	list, err := s.userSessions(ctx, sess, user)
	if err != nil {
		return sessionView{}, err
	}
	i := slices.IndexFunc(list, func(v sessionView) bool { return v.ID == ref })
	if i < 0 {
		return sessionView{}, errNoSuchSession
	}
	if list[i].Current {
		return list[i], sess.Destroy(ctx, ReasonRevoked)
	}
	ok, err := s.sessions.Destroy(ctx, ref, ReasonRevoked)
	if err == nil && !ok { // it ended since the list was read
		err = errNoSuchSession
	}
	return list[i], err
}

func (s *Server) apiRevoke(w http.ResponseWriter, r *http.Request) {
	v, err := s.revoke(r.Context(), r.PathValue("id"))
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"revoked": v.ID, "current": v.Current})
}

func (s *Server) revokeForm(w http.ResponseWriter, r *http.Request) {
	v, err := s.revoke(r.Context(), r.PathValue("id"))
	if err != nil {
		s.refuse(w, r, err, "/sessions")
		return
	}
	if v.Current {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	s.flash(r.Context(), "success", fmt.Sprintf("Signed out %s (last seen %s).", v.Name, v.Seen))
	http.Redirect(w, r, "/sessions", http.StatusSeeOther)
}

// logoutOthers ends every session of the signed-in user but this one and
// returns how many it ended.
func (s *Server) logoutOthers(ctx context.Context) (int, error) {
	sess, user, err := s.signedIn(ctx)
	if err != nil {
		return 0, err
	}
	return s.sessions.DestroyByTag(ctx, s.sessions.UserTag(user), "logout others", sess.Ref())
}

func (s *Server) apiLogoutOthers(w http.ResponseWriter, r *http.Request) {
	n, err := s.logoutOthers(r.Context())
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"sessions_ended": n})
}

func (s *Server) logoutOthersForm(w http.ResponseWriter, r *http.Request) {
	n, err := s.logoutOthers(r.Context())
	if err != nil {
		s.refuse(w, r, err, "/sessions")
		return
	}
	msg := "No other device was signed in."
	switch {
	case n == 1:
		msg = "Signed out 1 other session."
	case n > 1:
		msg = fmt.Sprintf("Signed out %d other sessions.", n)
	}
	s.flash(r.Context(), "success", msg)
	http.Redirect(w, r, "/sessions", http.StatusSeeOther)
}

// ago says how long before now t was, for people.
func ago(now, t time.Time) string {
	d := now.Sub(t)
	switch {
	case d < time.Minute:
		return "just now"
	case d < 2*time.Minute:
		return "a minute ago"
	case d < time.Hour:
		return fmt.Sprintf("%d minutes ago", int(d/time.Minute))
	case d < 2*time.Hour:
		return "an hour ago"
	case d < 24*time.Hour:
		return fmt.Sprintf("%d hours ago", int(d/time.Hour))
	case d < 48*time.Hour:
		return "yesterday"
	}
	return fmt.Sprintf("%d days ago", int(d/(24*time.Hour)))
}

// deviceName names the browser and system of a User-Agent for people
// ("Firefox on Windows"), roughly: it is a hint, never a security decision.
func deviceName(ua string) string {
	browser := ""
	for _, b := range []struct{ token, name string }{
		{"Edg/", "Edge"}, {"OPR/", "Opera"}, {"Firefox/", "Firefox"}, {"HeadlessChrome/", "Headless Chrome"},
		{"CriOS/", "Chrome"}, {"Chrome/", "Chrome"}, {"Safari/", "Safari"},
		{"curl/", "curl"}, {"Go-http-client/", "Go HTTP client"},
	} {
		if strings.Contains(ua, b.token) {
			browser = b.name
			break
		}
	}
	system := ""
	for _, o := range []struct{ token, name string }{
		{"iPhone", "iPhone"}, {"iPad", "iPad"}, {"Android", "Android"}, {"Windows", "Windows"},
		{"Mac OS X", "macOS"}, {"CrOS", "ChromeOS"}, {"Linux", "Linux"},
	} {
		if strings.Contains(ua, o.token) {
			system = o.name
			break
		}
	}
	switch {
	case browser != "" && system != "":
		return browser + " on " + system
	case browser != "":
		return browser
	case system != "":
		return "A browser on " + system
	case ua == "":
		return "Unknown device"
	}
	if len(ua) > 40 {
		return truncate(ua, 40) + "…"
	}
	return ua
}

// truncate cuts s to at most n bytes without leaving half a character.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}

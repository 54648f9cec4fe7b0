package session

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"
	"time"

	"github.com/fxsession/fxsession/cache"
)

// capLockTTL bounds how long a crashed process holds a user's cap lock.
const capLockTTL = 10 * time.Second

// UserTag is the tag that names user as the owner of a session: the
// UserTagPrefix ("user:" by default) and the user. Tag a session with it on
// login to list the user's sessions ([Manager.UserSessions]), end them
// ([Manager.DestroyByTag]) and cap them (Config.MaxSessionsPerUser).
func (m *Manager) UserTag(user string) string { return m.cfg.userPrefix + user }

// UserSessions streams the active sessions of user (those tagged
// [Manager.UserTag](user)) with their devices and last use: the "Sessions" page
// of a user's account.
func (m *Manager) UserSessions(ctx context.Context, user string) iter.Seq2[Metadata, error] {
	return m.ByTag(ctx, m.UserTag(user))
}

// enforceCaps applies Config.MaxSessionsPerUser to the user tags a write just
// added to the session keep. Lock of the session's state held.
func (m *Manager) enforceCaps(ctx context.Context, added []string, keep string) error {
	if m.cfg.maxPerUser <= 0 {
		return nil
	}
	for _, tag := range added {
		if strings.HasPrefix(tag, m.cfg.userPrefix) {
			if err := m.enforceCap(ctx, tag, keep); err != nil {
				return err
			}
		}
	}
	return nil
}

// enforceCap destroys the least recently used sessions tagged tag beyond the
// cap, never keep. It holds a store lock per tag, so that the checks of two
// concurrent logins (in any processes) run one after the other and the second
// sees the first's session.
func (m *Manager) enforceCap(ctx context.Context, tag, keep string) error {
	name := "cap." + tag
	if len(name) > cache.MaxKeyLen {
		sum := sha256.Sum256([]byte(tag))
		name = "cap." + hex.EncodeToString(sum[:])
	}
	token, err := cache.WaitLock(ctx, m.store, name, capLockTTL, m.cfg.commitTimeout)
	if err != nil {
		return fmt.Errorf("session: per-user cap of %s: %w", tag, err)
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.cfg.commitTimeout)
		defer cancel()
		if _, err := m.store.Unlock(uctx, name, token); err != nil {
			m.log.Warn("releasing a per-user cap lock", "tag", tag, "error", err)
		}
	}()
	var sessions []Metadata
	for md, err := range m.ByTag(ctx, tag) {
		if err != nil {
			return fmt.Errorf("session: per-user cap of %s: %w", tag, err)
		}
		sessions = append(sessions, md)
	}
	extra := len(sessions) - m.cfg.maxPerUser
	if extra <= 0 {
		return nil
	}
	slices.SortFunc(sessions, func(a, b Metadata) int { return a.LastUsed.Compare(b.LastUsed) })
	var victims []string
	for _, md := range sessions {
		if len(victims) == extra {
			break
		}
		if md.Ref != keep {
			victims = append(victims, md.Ref)
		}
	}
	n, err := m.destroy(ctx, victims, ReasonCap)
	if err != nil && !errors.Is(err, cache.ErrNotFound) {
		return fmt.Errorf("session: per-user cap of %s: %w", tag, err)
	}
	m.log.Info("sessions over the per-user cap destroyed", "tag", tag, "count", n, "cap", m.cfg.maxPerUser)
	return nil
}

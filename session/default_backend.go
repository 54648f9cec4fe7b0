package session

import (
	"errors"

	"github.com/fxsession/fxsession/cache"
)

// DefaultDir is the folder of the file store [Module] opens when the application
// provides no cache.Backend.
const DefaultDir = "var/sessions"

// openDefaultBackend opens the default store (a file store in DefaultDir).
func openDefaultBackend() (cache.Backend, error) {
	return nil, errors.New("session: no cache.Backend provided (file store default not wired yet)")
}

package session

import (
	"fmt"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/filestore"
)

// DefaultDir is the folder of the file store [Module] opens when the application
// provides no cache.Backend (relative to the working directory).
const DefaultDir = "var/sessions"

// openDefaultBackend opens the default store: a file store in DefaultDir, which
// survives restarts and deploys and is shared by the processes of one machine.
func openDefaultBackend() (cache.Backend, error) {
	s, err := filestore.Open(filestore.Options{Dir: DefaultDir})
	if err != nil {
		return nil, fmt.Errorf("session: opening the default file store in %s: %w", DefaultDir, err)
	}
	return s, nil
}

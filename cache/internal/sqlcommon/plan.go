package sqlcommon

import (
	"fmt"
	"slices"
	"time"

	"github.com/fxsession/fxsession/cache"
)

// Expiry says what a write does with a record's expiry.
type Expiry uint8

// The ways a write treats the expiry.
const (
	ExpiryKeep  Expiry = iota // keep it (a created record never expires)
	ExpiryClear               // the record never expires
	ExpirySet                 // Plan.Expires
)

// Plan is a validated [cache.Write] in the column-wise form the drivers bind:
// parallel slices, never nil, values never nil (SQL drivers send nil as NULL).
type Plan struct {
	Create bool
	// SetNames[i] is set to SetValues[i].
	SetNames  []string
	SetValues [][]byte
	// Remove names the fields to remove.
	Remove []string
	// CheckNames[i] must have version CheckVersions[i] (0: absent) before the
	// write, or nothing happens.
	CheckNames    []string
	CheckVersions []int64
	// AddTags and RemoveTags are sorted and without duplicates.
	AddTags, RemoveTags []string
	Expiry              Expiry
	Expires             time.Time // with ExpirySet
}

// NewPlan validates w and returns its plan. Values are not copied: the driver
// sends them before Write returns.
func NewPlan(key string, w cache.Write, maxValue int) (*Plan, error) {
	if err := cache.ValidateWrite(key, w, maxValue); err != nil {
		return nil, err
	}
	p := &Plan{
		Create:        w.Create,
		SetNames:      make([]string, 0, len(w.Fields)),
		SetValues:     make([][]byte, 0, len(w.Fields)),
		Remove:        []string{},
		CheckNames:    []string{},
		CheckVersions: []int64{},
		AddTags:       tags(w.AddTags),
		RemoveTags:    tags(w.RemoveTags),
	}
	for _, f := range w.Fields {
		if f.Check {
			p.CheckNames = append(p.CheckNames, f.Name)
			p.CheckVersions = append(p.CheckVersions, int64(f.Expect))
		}
		if f.Remove {
			p.Remove = append(p.Remove, f.Name)
			continue
		}
		v := f.Value
		if v == nil {
			v = []byte{}
		}
		p.SetNames = append(p.SetNames, f.Name)
		p.SetValues = append(p.SetValues, v)
	}
	switch {
	case w.Expires.Equal(cache.NoExpiry):
		p.Expiry = ExpiryClear
	case !w.Expires.IsZero():
		p.Expiry, p.Expires = ExpirySet, w.Expires
	}
	return p, nil
}

// NewTags returns the tags of a record that had old (sorted, no duplicates)
// after the plan: sorted, without duplicates.
func (p *Plan) NewTags(old []string) []string {
	out := make([]string, 0, len(old)+len(p.AddTags))
	for _, t := range old {
		if !slices.Contains(p.RemoveTags, t) {
			out = append(out, t)
		}
	}
	for _, t := range p.AddTags {
		if !slices.Contains(old, t) {
			out = append(out, t)
		}
	}
	return tags(out)
}

// Outcome is what a driver's write did: written (Version > 0) or refused, and
// why. A refused write changed nothing.
type Outcome struct {
	// Version is the record's new version; 0 when the write was refused.
	Version cache.Version
	// Exists: a create found a live record.
	Exists bool
	// Field, when set, is the field whose check failed; Have is its version
	// (0: absent).
	Field string
	Have  cache.Version
	// Otherwise a refused write found no live record to change.
}

// err turns a refused outcome into the error matching the cache sentinel.
func (o Outcome) err(name, key string, p *Plan) error {
	switch {
	case o.Exists:
		return fmt.Errorf("%s: create %q: a live record exists: %w", name, key, cache.ErrConflict)
	case o.Field != "":
		want := cache.Version(0)
		for i, n := range p.CheckNames {
			if n == o.Field {
				want = cache.Version(p.CheckVersions[i])
			}
		}
		return fmt.Errorf("%s: write %q: field %q has version %d, not %d: %w", name, key, o.Field, o.Have, want, cache.ErrConflict)
	default:
		return fmt.Errorf("%s: write %q: %w", name, key, cache.ErrNotFound)
	}
}

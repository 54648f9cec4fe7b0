package sqlcommon

import (
	"strings"
	"time"

	"github.com/fxsession/fxsession/cache"
)

// Row is one result row of a read or a collection: a record's columns and at
// most one of its fields. A record with several fields comes as several rows, one
// without a matching field as one row with an empty Field. The byte slices
// belong to the driver and are valid during the callback only.
type Row struct {
	Key     []byte
	Version int64
	Expires time.Time // the zero time: never
	// Tags are the record's tags separated by single spaces (tags never
	// contain one).
	Tags []byte
	// Field is the field's name; empty when the row carries no field.
	Field        []byte
	Value        []byte
	FieldVersion int64
}

// builder collects rows into records. Field values are copied into shared
// buffers, so a read costs a few allocations, not one per field.
type builder struct {
	names []string // the fields asked for, whose strings name the fields read
	recs  []cache.Record
	index map[string]int // key → position in recs, once there are many
	buf   []byte
}

// arenaSize is the smallest buffer field values are copied into.
const arenaSize = 4 << 10

// add takes one row into its record.
func (b *builder) add(r *Row) {
	i := b.find(r.Key)
	if i < 0 {
		i = len(b.recs)
		b.recs = append(b.recs, cache.Record{
			Key:     string(r.Key),
			Version: cache.Version(r.Version),
			Expires: r.Expires,
			Tags:    SplitTags(string(r.Tags)),
		})
		if b.index != nil {
			b.index[b.recs[i].Key] = i
		} else if len(b.recs) == 16 {
			b.index = make(map[string]int, 64)
			for j := range b.recs {
				b.index[b.recs[j].Key] = j
			}
		}
	}
	if len(r.Field) == 0 {
		return
	}
	rec := &b.recs[i]
	rec.Fields = append(rec.Fields, cache.Field{Name: b.name(r.Field), Value: b.copy(r.Value), Version: cache.Version(r.FieldVersion)})
}

// find returns the position of the record under key, or -1.
func (b *builder) find(key []byte) int {
	if b.index != nil {
		if i, ok := b.index[string(key)]; ok {
			return i
		}
		return -1
	}
	for i := range b.recs {
		if b.recs[i].Key == string(key) {
			return i
		}
	}
	return -1
}

// name returns the field name n as a string, reusing the caller's string when
// the field was asked for by name.
func (b *builder) name(n []byte) string {
	for _, s := range b.names {
		if s == string(n) {
			return s
		}
	}
	return string(n)
}

// copy returns a copy of v in the builder's buffers.
func (b *builder) copy(v []byte) []byte {
	if len(v) == 0 {
		return []byte{}
	}
	if cap(b.buf)-len(b.buf) < len(v) {
		b.buf = make([]byte, 0, max(arenaSize, 2*cap(b.buf), len(v)))
	}
	n := len(b.buf)
	b.buf = append(b.buf, v...)
	return b.buf[n:len(b.buf):len(b.buf)]
}

// JoinTags is the form of tags in a [Row] and in SQLite's records table: separated
// by single spaces.
func JoinTags(tags []string) string { return strings.Join(tags, " ") }

// SplitTags is the inverse of JoinTags (nil for none).
func SplitTags(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, " ")
}

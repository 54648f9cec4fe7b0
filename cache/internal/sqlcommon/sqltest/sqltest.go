// Package sqltest holds the tests both SQL stores run beyond the conformance
// suite, on their tables.
package sqltest

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fxsession/fxsession/cache"
)

// Rows counts the rows of a table (fxcache_records, fxcache_fields or
// fxcache_tags) in namespace ns.
type Rows func(t *testing.T, table, ns string) int

// CollectTwoHandles has two handles on one database (two processes), a and b
// in one namespace, collect expired records at once from four goroutines:
// every record is reported once, with the field asked for and its tags, and
// nothing of the records is left in the tables.
func CollectTwoHandles(t *testing.T, a, b cache.Store, rows Rows) {
	ctx := t.Context()
	const n = 300
	soon := time.Now().Add(300 * time.Millisecond)
	for i := range n {
		k := fmt.Sprintf("k%04d", i)
		if _, err := a.Write(ctx, k, cache.Write{Create: true, Expires: soon, AddTags: []string{"t", k},
			Fields: []cache.FieldWrite{cache.Set("m", []byte(k)), cache.Set("other", []byte("x"))}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Write(ctx, "live", cache.Write{Create: true, AddTags: []string{"t"}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(soon) + 50*time.Millisecond)
	var (
		mu   sync.Mutex
		seen = map[string]int{}
		wg   sync.WaitGroup
	)
	for _, st := range []cache.Store{a, b, a, b} {
		wg.Go(func() {
			for {
				got, err := st.CollectGarbage(ctx, cache.GCOptions{Max: 25, Fields: []string{"m"}, Removed: func(r cache.Record) {
					f, ok := r.Field("m")
					if !ok || string(f.Value) != r.Key || len(r.Fields) != 1 || len(r.Tags) != 2 || r.Expires.IsZero() {
						t.Errorf("reported %+v", r)
					}
					mu.Lock()
					seen[r.Key]++
					mu.Unlock()
				}})
				if err != nil {
					t.Error(err)
					return
				}
				if got == 0 {
					return
				}
			}
		})
	}
	wg.Wait()
	if len(seen) != n {
		t.Fatalf("%d records reported, want %d", len(seen), n)
	}
	for k, c := range seen {
		if c != 1 {
			t.Fatalf("%s reported %d times", k, c)
		}
	}
	for table, want := range map[string]int{"fxcache_records": 1, "fxcache_fields": 0, "fxcache_tags": 1} {
		if got := rows(t, table, a.Namespace()); got != want {
			t.Errorf("%s holds %d rows of the namespace, want %d", table, got, want)
		}
	}
}

// Cascade checks that a record's fields and tags go with it, whatever removes
// it: Delete, DeleteMany, Flush, a creation over it once expired.
func Cascade(t *testing.T, s cache.Store, rows Rows) {
	ctx := t.Context()
	ns := s.Namespace()
	w := cache.Write{Create: true, Fields: []cache.FieldWrite{cache.Set("a", nil), cache.Set("b", nil)}, AddTags: []string{"x", "y"}}
	for _, k := range []string{"del", "many1", "many2", "flushed"} {
		if _, err := s.Write(ctx, k, w); err != nil {
			t.Fatal(err)
		}
	}
	expired := w
	expired.Expires = time.Now().Add(-time.Second)
	if _, err := s.Write(ctx, "replaced", expired); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write(ctx, "replaced", cache.Write{Create: true, Fields: []cache.FieldWrite{cache.Set("c", nil)}}); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"fxcache_records": 5, "fxcache_fields": 9, "fxcache_tags": 8}
	for table, n := range want {
		if got := rows(t, table, ns); got != n {
			t.Errorf("%s holds %d rows of the namespace, want %d", table, got, n)
		}
	}
	if _, err := s.Delete(ctx, "del"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeleteMany(ctx, []string{"many1", "many2"}); err != nil {
		t.Fatal(err)
	}
	want = map[string]int{"fxcache_records": 2, "fxcache_fields": 3, "fxcache_tags": 2}
	for table, n := range want {
		if got := rows(t, table, ns); got != n {
			t.Errorf("after the deletes %s holds %d rows of the namespace, want %d", table, got, n)
		}
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for table := range want {
		if got := rows(t, table, ns); got != 0 {
			t.Errorf("after Flush %s holds %d rows of the namespace", table, got)
		}
	}
}

// OtherSchema checks that a store refuses a database whose schema table
// records another version than this release's, with a message saying what to
// do, and not as a failure to reach the database. open creates a fresh
// database, runs the statements given (which create fxcache_schema holding
// the version), and opens a store on it.
func OtherSchema(t *testing.T, open func(t *testing.T, statements string) error) {
	for v, want := range map[int]string{99: "newer than this release", 1: "does not migrate"} {
		err := open(t, fmt.Sprintf(`CREATE TABLE fxcache_schema (id int PRIMARY KEY, version int NOT NULL);
			INSERT INTO fxcache_schema VALUES (1, %d)`, v))
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("schema version %d, ", v)) || !strings.Contains(err.Error(), want) {
			t.Fatalf("Open on schema version %d: %v", v, err)
		}
		if errors.Is(err, cache.ErrUnavailable) {
			t.Fatalf("Open on schema version %d: %v is not a failure to reach the database", v, err)
		}
	}
}

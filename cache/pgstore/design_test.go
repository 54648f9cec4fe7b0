package pgstore_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fxsession/fxsession/cache"
	"github.com/fxsession/fxsession/cache/cachetest"
	"github.com/fxsession/fxsession/cache/pgstore"
)

// BenchmarkDesign measures the alternatives the package doc compares, on one
// connection, reporting the server's CPU time per operation (server-µs/op,
// from the backend's /proc/PID/schedstat: stable on a loaded machine, where
// wall time is not) beside the usual figures:
//
//   - Fields: the store's layout (a row per field) and its write function;
//   - MapColumn: one row per record holding its fields in three parallel
//     arrays (names, versions, values), written by a function of the same shape;
//   - Batch: the store's layout written by a pgx batch in an explicit
//     transaction (lock the record, check and draw the version into a
//     transaction-local setting, update, upsert, commit) instead of the
//     function; a minimal one, without creation, tags or expiry.
//
// Two record shapes: "8x512", cachetest.BenchFields fields of
// cachetest.BenchValueSize random bytes (the shape of cachetest.Bench), and
// "64k+7x64", a session holding one large object (64 KiB) and seven small
// values. Writes set one small field after checking another's absence, as a
// request touching a session's metadata does.
//
// It takes a minute, so it runs only when asked for:
//
//	FXSESSION_BENCH_DESIGN=1 go test -run '^$' -bench Design ./cache/pgstore/
func BenchmarkDesign(b *testing.B) {
	if os.Getenv("FXSESSION_BENCH_DESIGN") == "" {
		b.Skip("set FXSESSION_BENCH_DESIGN=1 to compare the layouts")
	}
	ctx := b.Context()
	if _, err := server.Pool().Exec(ctx, designSchema); err != nil {
		b.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, server.DSN())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(context.Background())
	var pid uint32
	if err := conn.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		b.Fatal(err)
	}
	const records = 1000
	for _, shape := range []struct {
		name  string
		sizes []int
	}{
		{"8x512", []int{512, 512, 512, 512, 512, 512, 512, 512}},
		{"64k+7x64", []int{64, 64, 64, 64, 64 << 10, 64, 64, 64}},
	} {
		ns := designRecords(b, shape.sizes, records)
		small := make([]byte, 64)
		ops := []struct {
			name string
			op   func(key string) error
		}{
			{"Read/Fields", func(k string) error { return drain(conn.Query(ctx, pgstore.QueryRead, ns, k, []string{})) }},
			{"Read/MapColumn", func(k string) error {
				return drain(conn.Query(ctx, `SELECT names, versions, vals FROM fxdesign_map
					WHERE namespace = $1 AND key = $2 AND (expires_at IS NULL OR expires_at > now())`, ns, k))
			}},
			{"ReadField/Fields", func(k string) error { return drain(conn.Query(ctx, pgstore.QueryRead, ns, k, []string{"f1"})) }},
			{"ReadField/MapColumn", func(k string) error {
				return drain(conn.Query(ctx, `SELECT vals[p], versions[p] FROM (
					SELECT vals, versions, array_position(names, $3) AS p FROM fxdesign_map
					WHERE namespace = $1 AND key = $2 AND (expires_at IS NULL OR expires_at > now())) r`, ns, k, "f1"))
			}},
			{"Write/Fields", func(k string) error {
				return drain(conn.Query(ctx, `SELECT o_version FROM fxcache_write($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
					ns, k, false, []string{"f1"}, [][]byte{small}, []string{}, []string{"zz"}, []int64{0}, []string{}, []string{}, int32(0), nil))
			}},
			{"Write/MapColumn", func(k string) error {
				return drain(conn.Query(ctx, `SELECT fxdesign_map_write($1, $2, $3, $4, $5, $6)`,
					ns, k, []string{"f1"}, [][]byte{small}, []string{"zz"}, []int64{0}))
			}},
			{"Write/Batch", func(k string) error {
				batch := &pgx.Batch{}
				batch.Queue(`BEGIN`)
				batch.Queue(`SELECT 1 FROM fxcache_records WHERE namespace = $1 AND key = $2
					AND (expires_at IS NULL OR expires_at > now()) FOR NO KEY UPDATE`, ns, k)
				batch.Queue(`SELECT set_config('fxcache.v', CASE WHEN NOT EXISTS (
						SELECT 1 FROM fxcache_fields WHERE namespace = $1 AND key = $2 AND name = $3)
					THEN nextval('fxcache_version')::text ELSE '0' END, true)::bigint`, ns, k, "zz")
				batch.Queue(`UPDATE fxcache_records SET version = current_setting('fxcache.v')::bigint
					WHERE namespace = $1 AND key = $2 AND current_setting('fxcache.v')::bigint > 0`, ns, k)
				batch.Queue(`INSERT INTO fxcache_fields (namespace, key, name, version, value)
					SELECT $1, $2, $3, current_setting('fxcache.v')::bigint, $4 WHERE current_setting('fxcache.v')::bigint > 0
					ON CONFLICT (namespace, key, name) DO UPDATE SET version = EXCLUDED.version, value = EXCLUDED.value`, ns, k, "f1", small)
				batch.Queue(`COMMIT`)
				return conn.SendBatch(ctx, batch).Close()
			}},
		}
		for _, o := range ops {
			b.Run(shape.name+"/"+o.name, func(b *testing.B) {
				b.ReportAllocs()
				cpu := serverCPU(b, pid)
				for b.Loop() {
					if err := o.op(fmt.Sprintf("k%04d", rand.N(records))); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(serverCPU(b, pid)-cpu)/float64(time.Microsecond)/float64(b.N), "server-µs/op")
			})
		}
	}
}

// designRecords writes records records of fields of the given sizes, random
// bytes, in both layouts, in a fresh namespace, and returns it.
func designRecords(b *testing.B, sizes []int, records int) string {
	ctx := b.Context()
	ns := cachetest.Namespace("design")
	st := open(b, pgstore.Options{Namespace: ns})
	for i := range records {
		k := fmt.Sprintf("k%04d", i)
		w := cache.Write{Create: true}
		var (
			names []string
			vals  [][]byte
			vers  []int64
		)
		for f, n := range sizes {
			v := make([]byte, n)
			for j := range v {
				v[j] = byte(rand.N(256))
			}
			w.Fields = append(w.Fields, cache.Set(fmt.Sprintf("f%d", f), v))
			names, vals, vers = append(names, fmt.Sprintf("f%d", f)), append(vals, v), append(vers, 1)
		}
		if _, err := st.Write(ctx, k, w); err != nil {
			b.Fatal(err)
		}
		if _, err := server.Pool().Exec(ctx, `INSERT INTO fxdesign_map VALUES ($1, $2, 1, NULL, '{}', $3, $4, $5)`,
			ns, k, names, vers, vals); err != nil {
			b.Fatal(err)
		}
	}
	// Settled tables, as a running store's are: statistics, visibility map,
	// hint bits.
	if _, err := server.Pool().Exec(ctx, `VACUUM ANALYZE fxcache_records, fxcache_fields, fxdesign_map`); err != nil {
		b.Fatal(err)
	}
	return ns
}

func drain(rows pgx.Rows, err error) error {
	if err != nil {
		return err
	}
	for rows.Next() {
	}
	rows.Close()
	return rows.Err()
}

// serverCPU is the CPU time the server process pid has used.
func serverCPU(b *testing.B, pid uint32) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/schedstat", pid))
	if err != nil {
		b.Skipf("the server's CPU time is not readable: %v", err)
	}
	var ns int64
	if _, err := fmt.Sscan(strings.Fields(string(raw))[0], &ns); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ns)
}

// designSchema is the map-column layout of BenchmarkDesign.
const designSchema = `
CREATE TABLE IF NOT EXISTS fxdesign_map (
	namespace  text COLLATE "C" NOT NULL,
	key        text COLLATE "C" NOT NULL,
	version    bigint NOT NULL,
	expires_at timestamptz,
	tags       text[] NOT NULL,
	names      text[] NOT NULL,
	versions   bigint[] NOT NULL,
	vals       bytea[] NOT NULL,
	PRIMARY KEY (namespace, key)
);
CREATE OR REPLACE FUNCTION fxdesign_map_write(p_ns text, p_key text,
	p_set_names text[], p_set_values bytea[], p_check_names text[], p_check_versions bigint[])
RETURNS bigint LANGUAGE plpgsql AS $fn$
DECLARE
	r   fxdesign_map%ROWTYPE;
	v   bigint;
	i   int;
	idx int;
BEGIN
	SELECT * INTO r FROM fxdesign_map WHERE namespace = p_ns AND key = p_key
		AND (expires_at IS NULL OR expires_at > now()) FOR NO KEY UPDATE;
	IF NOT FOUND THEN
		RETURN 0;
	END IF;
	FOR i IN 1 .. cardinality(p_check_names) LOOP
		idx := array_position(r.names, p_check_names[i]);
		IF coalesce(r.versions[idx], 0) <> p_check_versions[i] THEN
			RETURN 0;
		END IF;
	END LOOP;
	v := nextval('fxcache_version');
	FOR i IN 1 .. cardinality(p_set_names) LOOP
		idx := array_position(r.names, p_set_names[i]);
		IF idx IS NULL THEN
			r.names := r.names || p_set_names[i];
			r.versions := r.versions || v;
			r.vals := r.vals || p_set_values[i];
		ELSE
			r.versions[idx] := v;
			r.vals[idx] := p_set_values[i];
		END IF;
	END LOOP;
	UPDATE fxdesign_map SET version = v, names = r.names, versions = r.versions, vals = r.vals
		WHERE namespace = p_ns AND key = p_key;
	RETURN v;
END
$fn$;`

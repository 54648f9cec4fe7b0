package testserver

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"
)

func TestPostgresStartStopRestart(t *testing.T) {
	// Registered first, so it runs after StartPostgres's cleanup.
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
	pg := StartPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var db string
	if err := pg.Pool().QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil {
		t.Fatalf("query: %v", err)
	}
	if db != PostgresDatabase {
		t.Fatalf("current_database = %q, want %q", db, PostgresDatabase)
	}
	if os.Geteuid() == 0 {
		var super string
		if err := pg.Pool().QueryRow(ctx, "SELECT current_user").Scan(&super); err != nil || super != "postgres" {
			t.Fatalf("current_user = %q, %v", super, err)
		}
	}

	dsn, err := pg.CreateDatabase(ctx, "other_db")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect to %s: %v", dsn, err)
	}
	if err := conn.Close(ctx); err != nil {
		t.Fatal(err)
	}

	if _, err := pg.Pool().Exec(ctx, "CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)"); err != nil {
		t.Fatal(err)
	}
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	qctx, qcancel := context.WithTimeout(ctx, 3*time.Second)
	_, err = pg.Pool().Exec(qctx, "SELECT 1")
	qcancel()
	if err == nil {
		t.Fatal("query on a stopped server succeeded")
	}
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	// The pool recovers: a broken connection is discarded, a new one dialled.
	var v int
	deadline := time.Now().Add(5 * time.Second)
	for {
		err = pg.Pool().QueryRow(ctx, "SELECT v FROM kept").Scan(&v)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil || v != 42 {
		t.Fatalf("after restart: v=%d err=%v", v, err)
	}
}

func TestPostgresMain(t *testing.T) {
	pg, stop, err := StartPostgresMain()
	if err != nil {
		t.Fatal(err)
	}
	root := pg.root
	if err := pg.Pool().Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	stop()
	if _, err := os.Stat(root); !os.IsNotExist(err) {
		t.Fatalf("%s still exists after stop: %v", root, err)
	}
}

// Package reliability holds fxsession's cross-stack reliability tests: the
// checks of PRODUCT.md promises 11–13 (operations, concurrency, security) that
// need several packages at once — the session middleware, session-scoped
// objects, every storage backend, real redis-server processes, crashed file
// writers and the demo shop run as a separate process.
//
// The package has no production code. Its tests run in two sizes:
//
//   - `go test ./internal/reliability` (part of `make test`): every check at a
//     small count, in well under a minute;
//   - `make reliability`: the build tag `reliability` raises the counts to the
//     figures of docs/reliability.md, adds the checks that run the demo binary
//     (two processes on one file folder or one Redis server, SIGTERM under load)
//     and runs every fuzz target of the module for 60 s.
//
// Each check records what it tried, how much, and what was lost as a "figure"
// line in the test log and, when FXSESSION_RELIABILITY_FIGURES names a file, as a
// JSON line there; ./tablegen turns those lines into the table of
// docs/reliability.md.
//
// [Counting] is the one helper other tests may reuse: a [cache.Store]
// decorator that counts the calls reaching the store, to prove that hostile
// input is refused before any store access.
package reliability

// Package filestore is fxsession's default [cache.Store]: one file per record
// under a folder, persistent across restarts and deploys, safe against crashes,
// and shared correctly by the processes of one machine.
//
// # Layout
//
// Every namespace is a folder under Options.Dir (named after the namespace when
// it is made of lower-case letters, digits and "-_.:@" and does not start with a
// dot, otherwise "~" and a hash of it); a Sub is a sibling folder:
//
//	<Dir>/<namespace>/records/<xx>/<name>   one file per record: all its fields, their versions, tags, expiry
//	<Dir>/<namespace>/tags/<tag>/<name>     the tag index: one empty file per tagged record
//	<Dir>/<namespace>/locks/<name>          the locks taken with Lock (owner token and deadline)
//
// <name> is the hex SHA-256 of the key (or lock name) and <xx> its first two
// digits, so a namespace spreads over at most 256 folders. A record file is in a
// versioned binary format: the magic "FXR" and a format version byte, the record
// version, expiry, key and tags, the fields (name, version, value), and a
// CRC-32C of it all. A file that fails its checks reads as absent to every
// operation and is logged; garbage collection moves it aside (".corrupt-" and
// its name) for inspection.
//
// # Reads and writes
//
// [Store.Read] is one read of one file and takes no lock. [Store.Write] takes the
// record file's OS lock (flock: other processes wait; goroutines of one process
// queue before it), reads the file through the locked descriptor, checks every
// condition, writes the new file under a temporary name, fsyncs it, renames it
// over the record, fsyncs the folder, and unlocks. Creating a record locks an
// empty placeholder file first; readers see an empty file as absent.
// [Store.Delete] is one unlink under the same locks.
//
// # Crash safety
//
//   - A record file is only ever replaced whole, by rename: after a crash (of the
//     process or the machine) every record is its old or its new version, never a
//     mix or a torn file. A write that returned without error is on disk (file
//     and folder fsynced); so is a Delete. (A write that fails on the folder's
//     fsync, after its rename, may have been applied, as a network store's
//     write may be when it times out.)
//   - The tag index gets a record's new tags (fsynced) before the record, and
//     loses dropped ones after it: after a crash it may name records that lack
//     the tag or are gone (Tagged skips and removes them, so does
//     CollectGarbage), but it never misses a live record that has the tag. A
//     Delete leaves the index to be cleaned lazily.
//   - What an interrupted operation leaves (temporary files, placeholders, folders
//     of an interrupted Flush) is invisible to readers and removed by
//     [Store.CollectGarbage]; a temporary file is removed only once its writer is
//     provably gone (its record's lock is free), never by age.
//   - Locks taken with [Store.Lock] are not fsynced: after a machine crash they are
//     free, or held until their deadline.
//
// Versions grow with the clock (microseconds, as [cache.NextVersion]) and with
// every write of a record; a record deleted and created again gets versions above
// those of its earlier life unless the system clock went back in between.
//
// # Expiry and garbage collection
//
// Expired records are absent to every read and write. [Store.CollectGarbage]
// removes them, at most GCOptions.Max per call, each under its locks after a
// second look, so that of several processes collecting at once exactly one
// removes and reports it. A call that completes its walk of the namespace also
// sweeps the leftovers listed above, index entries of missing records and
// expired lock files.
//
// # Sharing and permissions
//
// Any number of processes may open the same folder; they coordinate through
// flock, which needs a local file system (not NFS). Open creates a missing folder.
// A folder the process may only read opens too (for admin tools): reads and
// iteration work, every write fails with an error matching
// [cache.ErrUnavailable] that names the path and the reason. flock is not
// available on Windows: there every operation that changes a record fails.
package filestore

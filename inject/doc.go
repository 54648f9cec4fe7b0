// Package inject does fxsession's reflection work, once per type: it decides which
// fields of a session-scoped object are state, which are dependencies and which
// are transient, finds the entities the state can hold, and encodes and decodes
// the state. Package scope builds a [Plan] for every session-scoped type when the
// fx app starts; the request path then only runs the precomputed plans.
//
// # Fields
//
// A plan classifies every field of a pointer-to-struct type:
//
//   - State: exported fields. Stored under their msgpack tag name (or Go name);
//     `msgpack:"-"` keeps a field out, `msgpack:",omitempty"` is honoured, untagged
//     embedded structs are flattened as msgpack does.
//   - Dependency: fields tagged `inject:""` (options `name=NAME` and `optional`),
//     and exported fields whose type is a constructor parameter type (passed to
//     [Dependencies]; basic types excepted). Never stored: after a load they hold
//     the container's live values again.
//   - Transient: `session:"-"` (or `msgpack:"-"`). Not stored; they come back at the
//     value the constructor gives them.
//   - Unexported fields are never stored: msgpack cannot reach them. Keep
//     dependencies the constructor receives in unexported fields; they are live
//     after a load because loading starts from what the constructor returns (in
//     scope: a call, or a copy of an earlier result holding the same singletons).
//
// `session:"autostart"` marks state whose change starts the session
// ([Plan.Fingerprint]).
//
// # Encoding
//
// State is a msgpack map of field name to value, so adding or removing fields never
// fails a load: unknown keys are skipped and missing keys leave the field at its
// fresh value. Map entries are written sorted by their encoded keys, so that equal
// state always encodes to equal bytes (scope relies on that to write only what
// changed).
//
// When a plan is built, each type it reaches gets an encoder and a decoder compiled
// for its shape (structs, slices, arrays, maps, pointers, strings, numbers,
// booleans, time.Time, entities, interfaces): closures over field offsets and
// element sizes that write the bytes msgpack writes and read what msgpack reads
// for that Go type, without msgpack's reflection. Other types (`any`, []byte,
// types with their own marshalling methods, structs whose msgpack tags inject does
// not model, such as embedded structs or options other than omitempty) are encoded
// and decoded by msgpack. Stored objects stay plain msgpack: any msgpack tool reads
// them.
//
// Interface-typed state is stored as [type name, value] and decodes only into the
// implementations registered with [Registry.AddImplementations]: stored bytes never
// choose an arbitrary Go type. An interface without registered implementations is a
// startup error. `any` (the empty interface) holds msgpack's generic values only.
//
// # Entities
//
// A type implementing [Entity] (EntityID() string), found anywhere in the state
// (fields, pointers, slices, arrays, map values, interfaces, other entities),
// needs a repository ([Repository], optionally [BatchRepository]); a missing one is
// a startup error. An entity is stored as a reference (its ID) while unchanged and
// whole when it was modified or is new:
//
//   - Unchanged means its encoding hashes to that of its repository version. For an
//     entity loaded from a reference that hash is taken at load time (kept in a
//     [Tracker]); for one the object gained during the request, the repository is
//     asked once (in one batch per type) when the object is encoded.
//   - An entity stored whole stays whole; it loads as stored.
//   - An entity with an empty ID is new and always stored whole.
//   - Two references to one entity load as one value (pointer identity kept);
//     two whole copies load as two values.
//
// On load, references are fetched in one batch per entity type when the repository
// has FindMany. A [Cache] in front of the repository serves them from memory
// (bounded in size, each entity for a TTL, with explicit invalidation). A reference whose entity is gone loads as the zero value of its
// place, with a slog warning, and everything else stays where it was: a nil
// pointer or interface field; a nil element at its position in a slice or array
// (the elements after it keep their indexes); a nil value under its key in a map
// (the key stays). Code that reads entities from loaded state checks for nil.
//
// # Hostile and outdated input
//
// [Plan.Decode] checks the input while it decodes it: every declared length
// (string, array, map, extension) against the bytes left, so that what it
// allocates is in proportion to the input, and nesting against [DefaultMaxDepth]
// (or [WithMaxDepth]). Values it skips (keys of fields that no longer exist) are
// checked the same way, and the bytes of a value it hands to msgpack first pass
// internal/msgpackcheck.Prepare, as every stored session value does, whichever
// msgpack version the application builds with. Input that does not fit the
// current type fails with [ErrIncompatible]; scope then starts over with a fresh
// instance.
//
// A key that occurs twice in one stored map replaces the value of the first.
package inject

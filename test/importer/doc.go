// Package importer is fxsession as an application meets it: a module of its own
// that requires fxsession with no replace directive but the one that finds this
// checkout, so it builds against upstream msgpack, exactly as an importer does
// (a dependency's replace directives never reach its importers).
//
// Its test stores every checked-in fuzz seed and crasher of fxsession as a
// session value, a bag and a session-scoped object, and reads them back through
// the public API only, under an address-space limit: hostile stored bytes must
// neither panic nor exhaust memory there.
package importer

module example.com/importer

go 1.26.0

require (
	github.com/fxsession/fxsession v0.0.0
	go.uber.org/fx v1.24.0
)

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/vmihailenco/msgpack/v5 v5.4.1 // indirect
	github.com/vmihailenco/tagparser/v2 v2.0.0 // indirect
	go.opentelemetry.io/otel v1.47.0 // indirect
	go.opentelemetry.io/otel/metric v1.47.0 // indirect
	go.opentelemetry.io/otel/trace v1.47.0 // indirect
	go.uber.org/dig v1.19.0 // indirect
	go.uber.org/multierr v1.10.0 // indirect
	go.uber.org/zap v1.26.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
)

// fxsession is not published yet: take it from this checkout. Nothing else is
// replaced, msgpack least of all: this module builds as an importer does.
replace github.com/fxsession/fxsession => ../..

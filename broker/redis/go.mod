module github.com/wsasync/wsasync/broker/redis

go 1.26.0

replace github.com/wsasync/wsasync => ../..

require (
	github.com/redis/go-redis/v9 v9.23.0
	github.com/wsasync/wsasync v0.0.0-00010101000000-000000000000
	go.uber.org/goleak v1.3.0
)

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/gobwas/httphead v0.1.0 // indirect
	github.com/gobwas/ws v1.5.0 // indirect
	go.uber.org/atomic v1.12.0 // indirect
	golang.org/x/sync v0.24.0 // indirect
	golang.org/x/sys v0.48.0 // indirect
)

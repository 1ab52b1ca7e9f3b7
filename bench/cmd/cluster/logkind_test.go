package main

import "testing"

func TestLogKind(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`time=2026-11-23T22:55:00.865Z level=WARN msg="sente: client resumed past the history" uid=u7391 client=c7391`, `WARN sente: client resumed past the history`},
		{`2026/11/23 22:49:11 WARN redis broker: reading the log key=cb64b316e3rsoak:log attempt=1 err=EOF`, `WARN redis broker: reading the log`},
		{`redis: 2026/11/23 22:49:11 pool.go:770: redis: connection pool: failed to dial after 1 attempts: dial tcp 127.0.0.1:35257: connect: connection refused`, `redis: redis: connection pool: failed to dial after N attempts: dial tcp N.N.N.N:N: connect: connection refused`},
	} {
		if got := logKind(c.in); got != c.want {
			t.Errorf("logKind(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

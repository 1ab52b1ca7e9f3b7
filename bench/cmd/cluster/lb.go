package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"
)

// runLB is the load balancer child (-lb-child): a TCP proxy without sticky
// sessions, like lb in broker/cluster/harness_test.go: each connection goes
// to the next backend that accepts it, round robin. It prints "listening
// ADDR" and runs until its stdin closes (the parent ended it or died).
//
// It is a process of its own because each proxied connection costs it two
// descriptors: 10,000 clients through one balancer in the bench process
// would need 10,000 client sockets + 20,000 proxy sockets there, over the
// 20,000 RLIMIT_NOFILE of this machine. The soak starts as many balancers
// as it takes to keep each one's share under the limit (two for 10,000
// clients: 5,000 × 2 = 10,000 descriptors each), all of them over the same
// three nodes.
func runLB(backends []string) {
	raiseNoFile()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "lb:", err)
		os.Exit(1)
	}
	fmt.Printf("listening %s\n", ln.Addr())
	go func() {
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	var (
		mu   sync.Mutex
		next int
	)
	dial := func() net.Conn {
		for range backends {
			mu.Lock()
			addr := backends[next%len(backends)]
			next++
			mu.Unlock()
			if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				return c
			}
		}
		return nil
	}
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			// Out of descriptors or the like: back off, as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			fmt.Fprintln(os.Stderr, "lb: accept:", err)
			time.Sleep(delay)
			continue
		}
		delay = 0
		go func() {
			s := dial()
			if s == nil {
				c.Close()
				return
			}
			go func() { pump(s, c); s.Close() }()
			pump(c, s)
			c.Close()
		}()
	}
}

// pump copies from src to dst through a 4 KiB buffer. Not io.Copy: between
// two TCP connections it splices, and each blocked splice holds a pipe, two
// more descriptors per direction: 6 per proxied connection instead of 2.
func pump(dst, src net.Conn) {
	buf := make([]byte, 4<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

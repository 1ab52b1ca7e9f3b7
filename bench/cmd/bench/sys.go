package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/wsasync/wsasync/bench/internal/measure"
)

// The machine is shared: other processes (tests, builds) may run while a
// figure is measured. cpuMark takes a snapshot of the CPU time of the whole
// machine, of the server and of this process, so that foreign() can tell how
// many cores something else used in between.
type cpuMark struct {
	at      time.Time
	busy    float64 // whole machine, seconds
	server  float64
	self    float64
	okProcs bool
	// read and write system calls of the server (/proc/PID/io)
	syscr, syscw float64
}

func mark(serverPID int) cpuMark {
	m := cpuMark{at: time.Now(), okProcs: true}
	var err error
	if m.busy, err = measure.MachineBusy(); err != nil {
		m.okProcs = false
	}
	if m.server, err = measure.ProcCPU(strconv.Itoa(serverPID), true); err != nil {
		m.okProcs = false
	}
	if m.self, err = measure.ProcCPU("self", true); err != nil {
		m.okProcs = false
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", serverPID)); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			k, v, _ := strings.Cut(l, ":")
			n, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			switch k {
			case "syscr":
				m.syscr = n
			case "syscw":
				m.syscw = n
			}
		}
	}
	return m
}

// foreign is the number of cores that processes other than the server and
// this driver kept busy between a and b.
func foreign(a, b cpuMark) float64 {
	if !a.okProcs || !b.okProcs {
		return 0
	}
	wall := b.at.Sub(a.at).Seconds()
	if wall <= 0 {
		return 0
	}
	f := ((b.busy - a.busy) - (b.server - a.server) - (b.self - a.self)) / wall
	return max(f, 0)
}

package measure

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// HZ is the clock tick of /proc's CPU times (USER_HZ on Linux).
const HZ = 100

// MachineBusy returns the CPU seconds all cores have spent busy since boot.
func MachineBusy() (float64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, fmt.Errorf("unexpected /proc/stat")
	}
	var total, idle float64
	for i, s := range f[1:] {
		if i >= 8 { // guest time is already counted in user
			break
		}
		v, _ := strconv.ParseFloat(s, 64)
		total += v
		if i == 3 || i == 4 { // idle, iowait
			idle += v
		}
	}
	return (total - idle) / HZ, nil
}

// WaitQuiet waits, up to limit, until the machine has been nearly idle for
// half a second (less than threshold cores busy), and returns how busy it
// was at the end.
func WaitQuiet(limit time.Duration, threshold float64) float64 {
	deadline := time.Now().Add(limit)
	for {
		a, _ := MachineBusy()
		time.Sleep(500 * time.Millisecond)
		b, _ := MachineBusy()
		busy := (b - a) / 0.5
		if busy < threshold || time.Now().After(deadline) {
			return busy
		}
	}
}

// LoadAvg returns the 1, 5 and 15 minute load averages, as /proc/loadavg
// gives them, or "" if it cannot be read.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// ProcCPU is the user+system CPU time of a process, in seconds, with that
// of its reaped children when children is set.
func ProcCPU(pid string, children bool) (float64, error) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	f := strings.Fields(s[i+1:])
	// after the command: state(0) ... utime(11) stime(12) cutime(13) cstime(14)
	fields := []int{11, 12}
	if children {
		fields = append(fields, 13, 14)
	}
	if len(f) <= fields[len(fields)-1] {
		return 0, fmt.Errorf("unexpected /proc/%s/stat", pid)
	}
	var sum float64
	for _, k := range fields {
		v, _ := strconv.ParseFloat(f[k], 64)
		sum += v
	}
	return sum / HZ, nil
}

// Host describes the machine: its CPU model, cores, memory and kernel.
func Host() (cpu string, cores int, memory, kernel string) {
	cores = runtime.NumCPU()
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		procs := 0
		for _, l := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(l, ":")
			switch k = strings.TrimSpace(k); {
			case !ok:
			case k == "model name" && cpu == "":
				cpu = strings.TrimSpace(v)
			case k == "processor":
				procs++
			}
		}
		if procs > 0 {
			cores = procs
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
				var kb float64
				fmt.Sscanf(strings.TrimSpace(v), "%f", &kb)
				memory = fmt.Sprintf("%.1f GiB", kb/(1<<20))
			}
		}
	}
	if b, err := exec.Command("uname", "-sr").Output(); err == nil {
		kernel = strings.TrimSpace(string(b))
	}
	return cpu, cores, memory, kernel
}

package measure

import (
	"fmt"
	"os"
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

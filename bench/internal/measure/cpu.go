package measure

import (
	"fmt"
	"os"
	"strconv"
	"strings"
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

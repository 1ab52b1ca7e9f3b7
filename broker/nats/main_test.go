package nats

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test ends with no goroutine left behind: brokers, their readers,
// heartbeats and the NATS connections alike.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

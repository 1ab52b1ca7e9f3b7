package sente_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test in the package ends with no goroutine left behind: servers,
// routers and clients alike.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

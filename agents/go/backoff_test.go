package main

import (
	"testing"
	"time"
)

func TestFullJitterDelay(t *testing.T) {
	top := func() float64 { return 0.999999 }
	zero := func() float64 { return 0 }
	if d := fullJitterDelay(0, defaultBackoff, top); d < 499*time.Millisecond || d >= 500*time.Millisecond {
		t.Fatalf("first retry ceiling: %v", d)
	}
	if d := fullJitterDelay(3, defaultBackoff, top); d < 3999*time.Millisecond || d >= 4*time.Second {
		t.Fatalf("fourth retry ceiling: %v", d)
	}
	if d := fullJitterDelay(1000, defaultBackoff, top); d < 29*time.Second || d >= 30*time.Second {
		t.Fatalf("capped: %v", d)
	}
	if d := fullJitterDelay(5, defaultBackoff, zero); d != 0 {
		t.Fatalf("full jitter reaches zero: %v", d)
	}
}

func TestBackoffForLease(t *testing.T) {
	p := backoffFor(10 * time.Second)
	if p.Cap != 2500*time.Millisecond || p.Base != 500*time.Millisecond {
		t.Fatalf("a quarter of the lease: %+v", p)
	}
	if p := backoffFor(0); p != defaultBackoff {
		t.Fatalf("no lease: %+v", p)
	}
	if p := backoffFor(time.Second); p.Cap != 250*time.Millisecond || p.Base != 250*time.Millisecond {
		t.Fatalf("short lease: %+v", p)
	}
}

func TestGoAwayDelay(t *testing.T) {
	if d := goAwayDelay(0, func() float64 { return 0.5 }); d != 500*time.Millisecond {
		t.Fatalf("no hint: %v", d)
	}
	if d := goAwayDelay(10*time.Second, func() float64 { return 0.5 }); d != 12500*time.Millisecond {
		t.Fatalf("hint: %v", d)
	}
}

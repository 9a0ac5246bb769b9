package main

import (
	"fmt"
	"testing"
	"time"
)

func TestParseDatetime(t *testing.T) {
	utc := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"2026-12-07T10:00:00.000Z":      utc,
		"2026-12-07T10:00:00Z":          utc,
		"2026-12-07T12:00:00.000+02:00": utc,
		"2026-12-07T12:00:00.000+0200":  utc,
		"2026-12-07T07:00:00-03":        utc,
		"2026-12-07T10:00:00.250Z":      utc.Add(250 * time.Millisecond),
		"2026-12-07T10:00:00.000":       time.Date(2026, 12, 7, 10, 0, 0, 0, time.Local),
		"2026-12-07T10:00:00":           time.Date(2026, 12, 7, 10, 0, 0, 0, time.Local),
		"1796637600000":                 utc,
	} {
		got, err := parseDatetime(in)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseDatetime(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "yesterday", "2026-12-07", "2026-12-07 10:00:00", "-5", "2026-13-07T10:00:00"} {
		if got, err := parseDatetime(in); err == nil {
			t.Errorf("parseDatetime(%q) = %v, want an error", in, got)
		}
	}
}

func TestParseResetDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"PT0S":           0,
		"PT30M":          30 * time.Minute,
		"P1D":            24 * time.Hour,
		"P1DT2H3M4S":     26*time.Hour + 3*time.Minute + 4*time.Second,
		"pt1.5s":         1500 * time.Millisecond,
		"PT0,000000001S": time.Nanosecond,
		"90m":            90 * time.Minute,
		"1h30m":          90 * time.Minute,
	} {
		got, err := parseResetDuration(in)
		if err != nil || got != want {
			t.Errorf("parseResetDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "P", "PT", "P1DT", "P1H", "PT1D", "-PT1S", "-5m", "P1Y", "P999999999999D", "soon"} {
		if got, err := parseResetDuration(in); err == nil {
			t.Errorf("parseResetDuration(%q) = %v, want an error", in, got)
		}
	}
}

func TestParseTopicScope(t *testing.T) {
	got, err := parseTopicScope([]string{"a", "b:2,0", "b:1,2", "a:3", "c:0"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]int32{"a": nil, "b": {0, 1, 2}, "c": {0}}
	if fmt.Sprint(got) != fmt.Sprint(want) || got["a"] != nil {
		t.Errorf("got %v, want %v", got, want)
	}
	for _, specs := range [][]string{{":1"}, {"a:"}, {"a:x"}, {"a:-1"}, {"a:1,,2"}} {
		if got, err := parseTopicScope(specs); err == nil {
			t.Errorf("parseTopicScope(%q) = %v, want an error", specs, got)
		}
	}
}

func TestResetTarget(t *testing.T) {
	now := time.UnixMilli(1_000_000_000)
	n := int64(-3)
	for _, tt := range []struct {
		cmd  groupResetOffsetsCmd
		want resetTarget
	}{
		{groupResetOffsetsCmd{ToEarliest: true}, resetTarget{kind: toEarliest}},
		{groupResetOffsetsCmd{ShiftBy: &n}, resetTarget{kind: shiftBy, n: -3}},
		{groupResetOffsetsCmd{ByDuration: "PT1M"}, resetTarget{kind: toTime, n: 1_000_000_000 - 60_000}},
		{groupResetOffsetsCmd{ToDatetime: "1234"}, resetTarget{kind: toTime, n: 1234}},
	} {
		got, err := tt.cmd.target(now)
		if err != nil || got != tt.want {
			t.Errorf("%+v: %+v, %v; want %+v", tt.cmd, got, err, tt.want)
		}
	}
	for _, c := range []groupResetOffsetsCmd{{}, {ToEarliest: true, ToCurrent: true}, {ToOffset: &n, ShiftBy: &n}} {
		if _, err := c.target(now); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
}

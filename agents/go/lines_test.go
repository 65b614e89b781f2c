package main

import (
	"reflect"
	"strings"
	"testing"
)

func split(chunks ...string) []string {
	s := newLineSplitter(0)
	var out []string
	for _, c := range chunks {
		out = append(out, s.Push([]byte(c))...)
	}
	return append(out, s.End()...)
}

func TestLinesSplitOnNewlines(t *testing.T) {
	cases := []struct {
		chunks []string
		want   []string
	}{
		{[]string{"a\nb\n"}, []string{"a", "b"}},
		{[]string{"a\nb"}, []string{"a", "b"}},
		{[]string{"a", "b\n", "c"}, []string{"ab", "c"}},
		{[]string{"\n\n"}, []string{"", ""}},
		{[]string{""}, nil},
		{[]string{"crlf\r\n", "x\r", "\n"}, []string{"crlf", "x"}},
		{[]string{"lone\rcr\n"}, []string{"lone\rcr"}},
		{[]string{"a\r\r\n"}, []string{"a\r"}},
		{[]string{"end\r"}, []string{"end"}},
	}
	for _, c := range cases {
		if got := split(c.chunks...); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q: got %q want %q", c.chunks, got, c.want)
		}
	}
}

func TestLinesInvalidUTF8(t *testing.T) {
	cases := []struct {
		chunks []string
		want   []string
	}{
		// A character cut between two reads stays whole.
		{[]string{"caf\xc3", "\xa9\n"}, []string{"café"}},
		{[]string{"\xf0\x9f", "\x98", "\x80!"}, []string{"😀!"}},
		// One U+FFFD per maximal subpart of an ill-formed sequence (WHATWG, like Node).
		{[]string{"a\xffb\n"}, []string{"a\uFFFDb"}},
		{[]string{"\xe2\x82A\n"}, []string{"\uFFFDA"}},
		{[]string{"\xe2\x82\n"}, []string{"\uFFFD"}},
		{[]string{"\xed\xa0\x80\n"}, []string{"\uFFFD\uFFFD\uFFFD"}},
		{[]string{"\xc0\xaf\n"}, []string{"\uFFFD\uFFFD"}},
		{[]string{"\xf4\x90\x80\x80\n"}, []string{"\uFFFD\uFFFD\uFFFD\uFFFD"}},
		{[]string{"tail\xe2\x82"}, []string{"tail\uFFFD"}},
		{[]string{"\xe2", "\x82", "\n"}, []string{"\uFFFD"}},
	}
	for _, c := range cases {
		if got := split(c.chunks...); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q: got %q want %q", c.chunks, got, c.want)
		}
	}
}

func TestLinesLongLinesAreCut(t *testing.T) {
	s := newLineSplitter(4)
	got := append(s.Push([]byte("abcdefghij")), s.Push([]byte("k\nxy\n"))...)
	got = append(got, s.End()...)
	want := []string{"abcd", "efgh", "ijk", "xy"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q want %q", got, want)
	}
	// A character of two UTF-16 units is never split.
	s = newLineSplitter(3)
	got = append(s.Push([]byte("ab😀c\n")), s.End()...)
	if !reflect.DeepEqual(got, []string{"ab", "😀c"}) {
		t.Fatalf("got %q", got)
	}
	long := strings.Repeat("x", 3*defaultMaxLineUnits+5)
	got = split(long + "\n")
	if len(got) != 4 || len(got[0]) != defaultMaxLineUnits || strings.Join(got, "") != long {
		t.Fatalf("default cap: %d pieces", len(got))
	}
}

func FuzzLinesKeepValidText(f *testing.F) {
	f.Add("hello\nworld", 3)
	f.Fuzz(func(t *testing.T, text string, cut int) {
		if !strings.Contains(text, "\r") && isValidUTF8(text) {
			if cut < 0 {
				cut = -cut
			}
			cut = cut % (len(text) + 1)
			got := split(text[:cut], text[cut:])
			want := strings.Split(text, "\n")
			if strings.HasSuffix(text, "\n") || text == "" {
				want = want[:len(want)-1]
			}
			if len(want) == 0 {
				want = nil
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Fatalf("%q cut %d: got %q want %q", text, cut, got, want)
			}
		}
	})
}

func isValidUTF8(s string) bool { return strings.ToValidUTF8(s, "") == s }

package main

// Bytes from a pipe into log lines: split on \n (a \r right before it is dropped too), bytes that are
// not valid UTF-8 become U+FFFD (one per maximal invalid subpart, as the WHATWG decoder and Node's
// StringDecoder do, so both agents store the same text), a character cut between two reads is kept
// whole, and a line longer than the cap is cut into pieces so that one runaway line cannot make a
// message too large. The cap counts UTF-16 code units, like the TypeScript agent's.

import (
	"strings"
	"unicode/utf8"
)

const defaultMaxLineUnits = 64 * 1024

type lineSplitter struct {
	maxUnits int
	pending  []byte // an incomplete UTF-8 sequence at the end of the last chunk
	partial  strings.Builder
	units    int // UTF-16 length of partial
}

func newLineSplitter(maxUnits int) *lineSplitter {
	if maxUnits <= 0 {
		maxUnits = defaultMaxLineUnits
	}
	return &lineSplitter{maxUnits: maxUnits}
}

// Push returns the complete lines this chunk finishes; an unfinished last line waits for more.
func (s *lineSplitter) Push(chunk []byte) []string {
	data := chunk
	if len(s.pending) > 0 {
		data = append(append([]byte{}, s.pending...), chunk...)
		s.pending = nil
	}
	var lines []string
	for {
		i := indexByte(data, '\n')
		if i < 0 {
			break
		}
		text, _ := decodeUTF8(data[:i], true)
		s.appendText(text, &lines)
		lines = append(lines, s.takeLine(true)...)
		data = data[i+1:]
	}
	text, rest := decodeUTF8(data, false)
	s.pending = append([]byte{}, rest...)
	s.appendText(text, &lines)
	return lines
}

// End says the output ended: whatever is left is the last line, even without a newline.
func (s *lineSplitter) End() []string {
	var lines []string
	if len(s.pending) > 0 {
		text, _ := decodeUTF8(s.pending, true)
		s.pending = nil
		s.appendText(text, &lines)
	}
	if s.partial.Len() > 0 {
		lines = append(lines, s.takeLine(true)...)
	}
	return lines
}

// appendText adds decoded text to the partial line, cutting off full-size pieces as it grows.
func (s *lineSplitter) appendText(text string, lines *[]string) {
	for _, r := range text {
		s.partial.WriteRune(r)
		s.units += utf16Len(r)
		if s.units > s.maxUnits {
			// The line is one unit too long: everything before r is a full piece (a character of
			// two units is never split, so a piece may be one unit short).
			whole := s.partial.String()
			head := whole[:len(whole)-utf8.RuneLen(r)]
			*lines = append(*lines, head)
			s.partial.Reset()
			s.partial.WriteRune(r)
			s.units = utf16Len(r)
		}
	}
}

// takeLine ends the partial line; a trailing \r is part of the line terminator.
func (s *lineSplitter) takeLine(stripCR bool) []string {
	line := s.partial.String()
	s.partial.Reset()
	s.units = 0
	if stripCR {
		line = strings.TrimSuffix(line, "\r")
	}
	return []string{line}
}

func utf16Len(r rune) int {
	if r >= 0x10000 {
		return 2
	}
	return 1
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// decodeUTF8 decodes b with the WHATWG rules: each maximal subpart of an ill-formed sequence becomes
// one U+FFFD. When final is false, an incomplete but so far valid sequence at the end is returned as
// rest instead, to be completed by the next chunk.
func decodeUTF8(b []byte, final bool) (string, []byte) {
	var out strings.Builder
	out.Grow(len(b))
	i := 0
	for i < len(b) {
		c := b[i]
		if c < 0x80 {
			out.WriteByte(c)
			i++
			continue
		}
		need, lo, hi := 0, byte(0x80), byte(0xBF)
		switch {
		case c >= 0xC2 && c <= 0xDF:
			need = 1
		case c == 0xE0:
			need, lo = 2, 0xA0
		case c >= 0xE1 && c <= 0xEC, c == 0xEE, c == 0xEF:
			need = 2
		case c == 0xED:
			need, hi = 2, 0x9F
		case c == 0xF0:
			need, lo = 3, 0x90
		case c >= 0xF1 && c <= 0xF3:
			need = 3
		case c == 0xF4:
			need, hi = 3, 0x8F
		default:
			out.WriteRune(utf8.RuneError)
			i++
			continue
		}
		j := i + 1
		ok := true
		for k := 0; k < need; k++ {
			if j >= len(b) {
				if !final {
					return out.String(), b[i:]
				}
				ok = false
				break
			}
			l, h := byte(0x80), byte(0xBF)
			if k == 0 {
				l, h = lo, hi
			}
			if b[j] < l || b[j] > h {
				ok = false
				break
			}
			j++
		}
		if ok {
			out.Write(b[i:j])
		} else {
			out.WriteRune(utf8.RuneError)
		}
		i = j
	}
	return out.String(), nil
}

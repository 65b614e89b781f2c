package main

// The agent's own diagnostics, one line each on stderr, in the TypeScript agent's format. Job output
// never goes here: it goes to the server.

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

var logMu sync.Mutex
var logDebugOn = os.Getenv("AGENT_DEBUG") == "1"

func writeLog(level, message string, kv []any) {
	var b strings.Builder
	b.WriteString(time.Now().UTC().Format("2006-01-02T15:04:05.000Z"))
	b.WriteString(" ")
	b.WriteString(fmt.Sprintf("%-5s", level))
	b.WriteString(" ")
	b.WriteString(message)
	for i := 0; i+1 < len(kv); i += 2 {
		value := fmt.Sprint(kv[i+1])
		if strings.ContainsAny(value, " \t\n\"=") {
			value = fmt.Sprintf("%q", value)
		}
		fmt.Fprintf(&b, " %v=%s", kv[i], value)
	}
	b.WriteString("\n")
	logMu.Lock()
	os.Stderr.WriteString(b.String())
	logMu.Unlock()
}

func logDebug(message string, kv ...any) {
	if logDebugOn {
		writeLog("DEBUG", message, kv)
	}
}
func logInfo(message string, kv ...any)  { writeLog("INFO", message, kv) }
func logWarn(message string, kv ...any)  { writeLog("WARN", message, kv) }
func logError(message string, kv ...any) { writeLog("ERROR", message, kv) }

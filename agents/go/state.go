package main

// What the agent keeps on disk in its state directory:
//   agent-id            its uuid, made once (same file as the TypeScript agent's)
//   agent.lock          the pid of the agent using the directory
//   runs/<job>-<n>.json a run record: the job, attempt and process group of a run, and once it has
//                       ended, its result (until the server acknowledges it)
//   runs/<job>-<n>.lines the run's log lines, so that a run that ended before a crash is reported
//                       after the restart with every line the server has not acknowledged
//   runs/<job>-<n>.patch the patch of a run that changed its repository (RunChange), sent in
//                       PatchChunks, again after a restart, until the server acknowledges the run

import (
	"bufio"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	pb "agent-jobs/agent-go/generated/agent/v1"
)

type stateDirError struct{ msg string }

func (e *stateDirError) Error() string { return e.msg }

var uuidRe = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

func newUUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func loadOrCreateAgentID(stateDir string) (string, bool, error) {
	file := filepath.Join(stateDir, "agent-id")
	data, err := os.ReadFile(file)
	if err == nil {
		id := strings.TrimSpace(string(data))
		if !uuidRe.MatchString(id) {
			return "", false, &stateDirError{fmt.Sprintf("%s does not hold a uuid; fix or delete it (deleting makes this a new agent)", file)}
		}
		return id, false, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", false, &stateDirError{fmt.Sprintf("cannot read %s: %v", file, err)}
	}
	id := newUUID()
	if err := writeFileAtomic(file, []byte(id+"\n")); err != nil {
		return "", false, &stateDirError{fmt.Sprintf("cannot write %s: %v", file, err)}
	}
	return id, true, nil
}

func writeFileAtomic(file string, data []byte) error {
	tmp := fmt.Sprintf("%s.%d.tmp", file, os.Getpid())
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err = f.Write(data); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, file)
}

// acquireStateLock makes sure one agent process uses a state directory: two sharing an agent id
// would keep replacing each other's stream. A lock whose pid is dead is stale and taken over.
func acquireStateLock(stateDir string) (release func(), err error) {
	file := filepath.Join(stateDir, "agent.lock")
	for tries := 0; tries < 2; tries++ {
		f, err := os.OpenFile(file, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err == nil {
			fmt.Fprintf(f, "%d\n", os.Getpid())
			f.Close()
			return func() { os.Remove(file) }, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return nil, &stateDirError{fmt.Sprintf("cannot create %s: %v", file, err)}
		}
		data, _ := os.ReadFile(file)
		holder, convErr := strconv.Atoi(strings.TrimSpace(string(data)))
		if convErr == nil && holder > 0 && holder != os.Getpid() && processAlive(holder) {
			return nil, &stateDirError{fmt.Sprintf("another agent (pid %d) is using %s; give each agent its own --state-dir (if pid %d is no agent, delete %s)", holder, stateDir, holder, file)}
		}
		os.Remove(file)
	}
	return nil, &stateDirError{fmt.Sprintf("cannot take %s: another agent is starting with the same --state-dir", file)}
}

// processAlive: a zombie (exited, not yet reaped, as a killed agent whose parent is gone may stay)
// is not alive.
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	if err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	if stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		s := string(stat)
		if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) && (s[i+2] == 'Z' || s[i+2] == 'X') {
			return false
		}
	}
	return true
}

// runRecord is one run on disk.
type runRecord struct {
	JobID   string     `json:"jobId"`
	Attempt uint32     `json:"attempt"`
	Pgid    int        `json:"pgid,omitempty"`
	Folder  string     `json:"folder,omitempty"`
	Ended   *runResult `json:"ended,omitempty"`
}

// runResult is how a run ended, as reported to the server.
type runResult struct {
	// GiveBack: the run was stopped to give the job back (JobRejected), not finished (JobFinished).
	GiveBack   bool      `json:"giveBack,omitempty"`
	Outcome    int32     `json:"outcome"`
	ExitCode   *int32    `json:"exitCode,omitempty"`
	Reason     string    `json:"reason,omitempty"`
	FinishedAt time.Time `json:"finishedAt"`
	LastSeq    uint64    `json:"lastSeq"`
	// Change: what a successful run changed (JobFinished.change); its patch is in the .patch file.
	Change *storedChange `json:"change,omitempty"`
}

// storedChange is a RunChange in a run record, as protobuf JSON.
type storedChange struct{ *pb.RunChange }

func (c storedChange) MarshalJSON() ([]byte, error) { return protojson.Marshal(c.RunChange) }

func (c *storedChange) UnmarshalJSON(data []byte) error {
	c.RunChange = &pb.RunChange{}
	return protojson.Unmarshal(data, c.RunChange)
}

type runStore struct{ dir string }

func (s runStore) base(jobID string, attempt uint32) string {
	return filepath.Join(s.dir, fmt.Sprintf("%s-%d", jobID, attempt))
}

func (s runStore) write(rec runRecord) error {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return err
	}
	data, _ := json.Marshal(rec)
	return writeFileAtomic(s.base(rec.JobID, rec.Attempt)+".json", data)
}

func (s runStore) remove(jobID string, attempt uint32) {
	base := s.base(jobID, attempt)
	os.Remove(base + ".json")
	os.Remove(base + ".lines")
	os.Remove(base + ".patch")
}

// patchFile is where a run's patch is kept until the server has acknowledged the run.
func (s runStore) patchFile(jobID string, attempt uint32) string {
	return s.base(jobID, attempt) + ".patch"
}

// spoolLine is one log line in a run's .lines file.
type spoolLine struct {
	Seq    uint64 `json:"s"`
	AtNano int64  `json:"t"`
	Stream int32  `json:"k"`
	Text   string `json:"x"`
}

type spool struct {
	f *os.File
	w *bufio.Writer
}

func (s runStore) openSpool(jobID string, attempt uint32) (*spool, error) {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(s.base(jobID, attempt)+".lines", os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	return &spool{f: f, w: bufio.NewWriterSize(f, 64*1024)}, nil
}

func (sp *spool) append(line spoolLine) {
	if sp == nil {
		return
	}
	data, _ := json.Marshal(line)
	sp.w.Write(data)
	sp.w.WriteByte('\n')
}

// close flushes the lines to disk (fsync) before the run's result is recorded.
func (sp *spool) close() error {
	if sp == nil {
		return nil
	}
	err := sp.w.Flush()
	if err == nil {
		err = sp.f.Sync()
	}
	if cerr := sp.f.Close(); err == nil {
		err = cerr
	}
	return err
}

func (s runStore) readSpool(jobID string, attempt uint32) ([]spoolLine, error) {
	f, err := os.Open(s.base(jobID, attempt) + ".lines")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var lines []spoolLine
	scanner := bufio.NewScanner(f)
	scanner.Buffer(make([]byte, 1024*1024), 16*1024*1024)
	for scanner.Scan() {
		var l spoolLine
		if err := json.Unmarshal(scanner.Bytes(), &l); err != nil {
			return nil, err
		}
		lines = append(lines, l)
	}
	return lines, scanner.Err()
}

func (s runStore) list() []runRecord {
	entries, _ := os.ReadDir(s.dir)
	var out []runRecord
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(s.dir, e.Name()))
		var rec runRecord
		if err != nil || json.Unmarshal(data, &rec) != nil || rec.JobID == "" {
			logWarn("ignoring a damaged run record", "file", e.Name())
			base := filepath.Join(s.dir, strings.TrimSuffix(e.Name(), ".json"))
			for _, ext := range []string{".json", ".lines", ".patch"} {
				os.Remove(base + ext)
			}
			continue
		}
		out = append(out, rec)
	}
	return out
}

// groupBelongsToJob: a pid can be reused, so a recorded group is killed only if one of its members
// still carries the job's JOB_ID in its environment (read from /proc).
func groupBelongsToJob(pgid int, jobID string) bool {
	marker := []byte("JOB_ID=" + jobID + "\x00")
	for _, pid := range groupMembers(pgid) {
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err == nil && (strings.Contains(string(env), string(marker)) || strings.HasPrefix(string(env), string(marker))) {
			return true
		}
	}
	return false
}

func groupMembers(pgid int) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(s[i+1:])
		if len(fields) >= 3 {
			if g, err := strconv.Atoi(fields[2]); err == nil && g == pgid {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// runFolderName is <job_id>-<attempt>, or "" when the job id could escape the work directory.
var safeJobID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

func runFolderName(jobID string, attempt uint32) string {
	if !safeJobID.MatchString(jobID) {
		return ""
	}
	return fmt.Sprintf("%s-%d", jobID, attempt)
}

// runFolderMarker marks folders the agent made, so only those are ever deleted wholesale.
const runFolderMarker = ".agent-jobs-run"

func removeStaleRunFolders(workDir string) {
	entries, _ := os.ReadDir(workDir)
	for _, e := range entries {
		folder := filepath.Join(workDir, e.Name())
		if _, err := os.Stat(filepath.Join(folder, runFolderMarker)); e.IsDir() && err == nil {
			os.RemoveAll(folder)
		}
	}
}

// patchSize is the size of the run's patch (0 without a change).
func (res *runResult) patchSize() uint64 {
	if res == nil {
		return 0
	}
	return res.Change.patchSize()
}

func (c *storedChange) patchSize() uint64 {
	if c == nil || c.RunChange == nil {
		return 0
	}
	return c.GetPatchSize()
}

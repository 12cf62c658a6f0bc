/* mmt._native: the C parts of MIDI reading and data preparation (CPython's C API alone).
 *
 * Each function gives exactly what its Python counterpart gives (the tests compare them), or
 * None where it cannot vouch for that; the callers then use the Python code.
 *
 * notes_from_ticks(raw, scale, resolution): mmt.encoding.notes_from_ticks, see there.
 * clean_notes(notes): data_prep.pipeline.clean_notes, see there.
 *
 * scan(data: bytes) -> None or (ticks_per_beat, notes, tempos, time_signatures)
 *
 *   notes            bytearray of int64 rows (onset tick, pitch, duration ticks, program or 128
 *                    for channel 10), in note-on order within each track
 *   tempos           [(tick, microseconds per beat)] in file order (track by track)
 *   time_signatures  [(tick, numerator, denominator)] in file order
 *
 * The pairing is the one mmt.midi's symusic path computes (see that module's docstring): per
 * MIDI track, channel and pitch, at each tick note-ons come before note-offs, a note-off ends
 * the oldest sounding note or nothing, a note still sounding ends at the track's end-of-track
 * event; a note takes the program its channel had (in its track) at its note-on. "Oldest":
 * earliest note-on, and among note-ons of one tick, lowest program first, then first written
 * (symusic lists a channel's notes by program, and the symusic path takes the note-ons of a
 * tick in that order).
 *
 * None means "not proven here": the file holds something whose reading by the symusic path
 * this scanner does not reproduce for certain (a malformed or truncated chunk, running status
 * with no status before it or after a SysEx, a system message, a data byte >= 0x80, a track
 * whose end-of-track event is missing, not last, or not the first FF 2F 00 bytes of the
 * track, a tempo or time signature of an odd length, a zero tempo, a denominator beyond
 * 2**7, ticks beyond 2**30, more than LIMIT stray note-offs or notes left sounding on one
 * key, a channel with note-offs on all 128 keys, a note-on that would pass more than
 * MAX_WALK sounding notes of its key to find its place, a header of another size than 6,
 * type 0 with other than one track, no tracks). The caller then reads the file the slow way, which
 * also raises the errors. Nothing here raises but MemoryError and TypeError.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#define LIMIT 100                 /* see the conditions above and mmt.midi */
#define MAX_TICK (1u << 30)
#define N_KEYS (16 * 128)
#define NONE_TICK 0xFFFFFFFFu

typedef struct {
    uint32_t stamp;               /* the track this state belongs to (older: reset it) */
    int32_t head, tail;           /* sounding notes, oldest first (indices into the notes) */
    uint32_t pending_tick;        /* note-offs at this tick that found no note of an earlier tick sounding: */
    int32_t pending;              /* they end that tick's note-ons, in order, once the tick is over */
    uint32_t on_tick;             /* the last note-on's tick, and how many note-ons at it */
    int32_t ons_at_tick;
    uint32_t off_tick;            /* the last note-off's tick, and how many note-offs at it */
    int32_t offs_at_tick;
    int32_t ons, offs;
} Key;

static Key keys[N_KEYS];
static uint32_t stamp_now = 0;

typedef struct {
    int64_t *rows;                /* 4 per note: onset, pitch, end (then duration), program */
    int32_t *next;                /* per note: the next sounding note of its key, -1: none */
    uint8_t *program;             /* per note: its channel's program (drums too), which orders a tick's notes */
    Py_ssize_t n, capacity;
} Notes;

static int grow(Notes *notes) {
    Py_ssize_t capacity = notes->capacity ? notes->capacity * 2 : 1024;
    int64_t *rows = realloc(notes->rows, (size_t)capacity * 4 * sizeof(int64_t));
    if (!rows) return -1;
    notes->rows = rows;
    int32_t *next = realloc(notes->next, (size_t)capacity * sizeof(int32_t));
    if (!next) return -1;
    notes->next = next;
    uint8_t *program = realloc(notes->program, (size_t)capacity);
    if (!program) return -1;
    notes->program = program;
    notes->capacity = capacity;
    return 0;
}

/* A variable-length quantity of at most 4 bytes; -1 when it runs past `end` or goes on. */
static int read_varlen(const uint8_t **at, const uint8_t *end, uint32_t *value) {
    const uint8_t *p = *at;
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        if (p >= end) return -1;
        uint8_t byte = *p++;
        v = (v << 7) | (byte & 0x7F);
        if (!(byte & 0x80)) {
            *at = p;
            *value = v;
            return 0;
        }
    }
    return -1;
}

static const uint8_t *find_end_of_track(const uint8_t *data, Py_ssize_t size) {
    for (Py_ssize_t i = 0; i + 3 <= size; i++)
        if (data[i] == 0xFF && data[i + 1] == 0x2F && data[i + 2] == 0x00) return data + i;
    return NULL;
}

static Key *key_of(int index, uint16_t *touched, int *n_touched) {
    Key *key = &keys[index];
    if (key->stamp != stamp_now) {
        key->stamp = stamp_now;
        key->head = key->tail = -1;
        key->pending_tick = key->on_tick = key->off_tick = NONE_TICK;
        key->pending = key->ons_at_tick = key->offs_at_tick = key->ons = key->offs = 0;
        touched[(*n_touched)++] = (uint16_t)index;
    }
    return key;
}

enum { OK = 0, UNPROVEN = 1, NO_MEMORY = 2 };

#define MAX_WALK 4096             /* queue entries passed to place one note-on (else: UNPROVEN) */

/* The note-offs of `key` held at its pending tick end that tick's note-ons (the head of its queue now). */
static void settle(Key *key, Notes *notes) {
    for (; key->pending > 0; key->pending--) {
        int32_t index = key->head;
        if (index < 0 || (uint32_t)notes->rows[4 * index] != key->pending_tick) break;
        notes->rows[4 * index + 2] = key->pending_tick;
        key->head = notes->next[index];
        if (key->head < 0) key->tail = -1;
    }
    key->pending = 0;
}

/* Put note `index` (onset `tick`, program `program`) in `key`'s queue: after the notes of earlier
 * ticks and those of its tick with a program <= its own. 0, or UNPROVEN after MAX_WALK steps. */
static int enqueue(Key *key, Notes *notes, int32_t index, uint32_t tick, uint8_t program) {
    int32_t tail = key->tail;
    if (tail < 0) {
        key->head = key->tail = index;
        return OK;
    }
    if ((uint32_t)notes->rows[4 * tail] < tick || notes->program[tail] <= program) {
        notes->next[tail] = index;
        key->tail = index;
        return OK;
    }
    int32_t before = -1, at = key->head;
    for (int steps = 0; at >= 0 && ((uint32_t)notes->rows[4 * at] < tick || notes->program[at] <= program); steps++) {
        if (steps >= MAX_WALK) return UNPROVEN;
        before = at;
        at = notes->next[at];
    }
    notes->next[index] = at;   /* at >= 0: the tail itself goes after this note */
    if (before < 0) key->head = index;
    else notes->next[before] = index;
    return OK;
}

/* One track's events: notes appended to `notes`, tempos and meters to the lists. */
static int scan_track(const uint8_t *data, Py_ssize_t size, Notes *notes, PyObject *tempos, PyObject *meters) {
    const uint8_t *p = data, *end = data + size;
    const uint8_t *eot = find_end_of_track(data, size);
    if (!eot || eot != end - 3) return UNPROVEN;
    if (++stamp_now == 0) {  /* wrapped: forget every stamp */
        memset(keys, 0, sizeof(keys));
        stamp_now = 1;
    }
    uint16_t touched[N_KEYS];
    int n_touched = 0;
    int off_keys[16] = {0};       /* per channel: keys with a note-off */
    int program[16] = {0};
    uint8_t running = 0;
    uint32_t tick = 0;
    for (;;) {
        uint32_t delta;
        if (read_varlen(&p, end, &delta) < 0) return UNPROVEN;
        tick += delta;
        if (tick > MAX_TICK || p >= end) return UNPROVEN;
        uint8_t status = *p;
        if (status == 0xFF) {     /* meta: leaves the running status as it is */
            if (p + 2 > end) return UNPROVEN;
            uint8_t type = p[1];
            uint32_t length;
            p += 2;
            if (read_varlen(&p, end, &length) < 0 || length > (uint32_t)(end - p)) return UNPROVEN;
            if (type == 0x2F) {
                if (length != 0 || p != end) return UNPROVEN;
                break;
            }
            if (type == 0x51) {
                if (length != 3) return UNPROVEN;
                long mspq = (long)p[0] << 16 | (long)p[1] << 8 | (long)p[2];
                if (mspq == 0) return UNPROVEN;
                PyObject *item = Py_BuildValue("(kl)", (unsigned long)tick, mspq);
                if (!item || PyList_Append(tempos, item) < 0) {
                    Py_XDECREF(item);
                    return NO_MEMORY;
                }
                Py_DECREF(item);
            } else if (type == 0x58) {
                if (length != 4 || p[1] > 7) return UNPROVEN;
                PyObject *item = Py_BuildValue("(kii)", (unsigned long)tick, (int)p[0], 1 << p[1]);
                if (!item || PyList_Append(meters, item) < 0) {
                    Py_XDECREF(item);
                    return NO_MEMORY;
                }
                Py_DECREF(item);
            }
            p += length;
            continue;
        }
        if (status == 0xF0) {     /* SysEx: no running status may follow */
            uint32_t length;
            p += 1;
            if (read_varlen(&p, end, &length) < 0 || length > (uint32_t)(end - p)) return UNPROVEN;
            p += length;
            running = 0;
            continue;
        }
        if (status >= 0xF0) return UNPROVEN;   /* system messages, F7 */
        if (status & 0x80) {
            running = status;
            p += 1;
        } else if (!running) {
            return UNPROVEN;
        }
        uint8_t kind = running & 0xF0, channel = running & 0x0F;
        int n_data = (kind == 0xC0 || kind == 0xD0) ? 1 : 2;
        if (p + n_data > end) return UNPROVEN;
        if ((p[0] & 0x80) || (n_data == 2 && (p[1] & 0x80))) return UNPROVEN;
        uint8_t a = p[0], b = n_data == 2 ? p[1] : 0;
        p += n_data;
        if (kind == 0xC0) {
            program[channel] = a;
        } else if (kind == 0x90 && b > 0) {   /* note-on */
            Key *key = key_of(channel * 128 + a, touched, &n_touched);
            if (key->pending > 0 && key->pending_tick != tick) settle(key, notes);
            key->ons += 1;
            if (key->on_tick == tick) {
                key->ons_at_tick += 1;
            } else {
                key->on_tick = tick;
                key->ons_at_tick = 1;
            }
            if (notes->n == notes->capacity && grow(notes) < 0) return NO_MEMORY;
            Py_ssize_t index = notes->n++;
            int64_t *row = notes->rows + 4 * index;
            row[0] = tick;
            row[1] = a;
            row[2] = -1;
            row[3] = channel == 9 ? 128 : program[channel];
            notes->next[index] = -1;
            notes->program[index] = (uint8_t)program[channel];
            if (enqueue(key, notes, (int32_t)index, tick, (uint8_t)program[channel]) != OK) return UNPROVEN;
        } else if (kind == 0x80 || kind == 0x90) {   /* note-off (or note-on of velocity 0) */
            Key *key = key_of(channel * 128 + a, touched, &n_touched);
            if (key->pending > 0 && key->pending_tick != tick) settle(key, notes);
            if (key->offs++ == 0) off_keys[channel] += 1;
            if (key->off_tick == tick) {
                key->offs_at_tick += 1;
            } else {
                key->off_tick = tick;
                key->offs_at_tick = 1;
            }
            int32_t ons_before = key->ons - (key->on_tick == tick ? key->ons_at_tick : 0);
            if (key->offs - ons_before > LIMIT) return UNPROVEN;
            if (key->head >= 0 && (uint32_t)notes->rows[4 * key->head] < tick) {   /* a note of an earlier tick */
                int32_t index = key->head;
                notes->rows[4 * index + 2] = tick;
                key->head = notes->next[index];
                if (key->head < 0) key->tail = -1;
            } else {   /* one of this tick's note-ons, or none: known when the tick is over */
                key->pending_tick = tick;
                key->pending += 1;
            }
        }
    }
    for (int c = 0; c < 16; c++)
        if (off_keys[c] == 128) return UNPROVEN;
    for (int i = 0; i < n_touched; i++) {   /* notes still sounding end with the track */
        Key *key = &keys[touched[i]];
        settle(key, notes);
        int left = 0;
        for (int32_t index = key->head; index >= 0; index = notes->next[index]) {
            notes->rows[4 * index + 2] = tick;
            left += 1;
        }
        if (left + (key->off_tick == tick ? key->offs_at_tick : 0) > LIMIT) return UNPROVEN;
    }
    return OK;
}

static uint32_t read_be(const uint8_t *p, int n) {
    uint32_t v = 0;
    for (int i = 0; i < n; i++) v = v << 8 | p[i];
    return v;
}

static PyObject *scan(PyObject *self, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    const uint8_t *data = view.buf;
    Py_ssize_t size = view.len;
    PyObject *tempos = NULL, *meters = NULL, *rows = NULL, *result = NULL;
    Notes notes = {0};
    int state = UNPROVEN;
    if (size < 14 || memcmp(data, "MThd", 4) != 0 || read_be(data + 4, 4) != 6) goto done;
    uint32_t format = read_be(data + 8, 2), n_tracks = read_be(data + 10, 2), division = read_be(data + 12, 2);
    if (format > 1 || n_tracks == 0 || (format == 0 && n_tracks != 1) || division == 0 || (division & 0x8000))
        goto done;
    tempos = PyList_New(0);
    meters = PyList_New(0);
    if (!tempos || !meters) {
        state = NO_MEMORY;
        goto done;
    }
    Py_ssize_t at = 14;
    state = OK;
    for (uint32_t t = 0; t < n_tracks && state == OK; t++) {
        if (size - at < 8 || memcmp(data + at, "MTrk", 4) != 0) {
            state = UNPROVEN;
            break;
        }
        Py_ssize_t length = read_be(data + at + 4, 4);
        if (length > size - at - 8) {
            state = UNPROVEN;
            break;
        }
        state = scan_track(data + at + 8, length, &notes, tempos, meters);
        at += 8 + length;
    }
    if (state != OK) goto done;
    for (Py_ssize_t i = 0; i < notes.n; i++) notes.rows[4 * i + 2] -= notes.rows[4 * i];   /* end -> duration */
    rows = PyByteArray_FromStringAndSize((const char *)notes.rows, notes.n * 4 * (Py_ssize_t)sizeof(int64_t));
    if (!rows) {
        state = NO_MEMORY;
        goto done;
    }
    result = Py_BuildValue("(kOOO)", (unsigned long)division, rows, tempos, meters);
    if (!result) state = NO_MEMORY;
done:
    free(notes.rows);
    free(notes.next);
    free(notes.program);
    Py_XDECREF(rows);
    Py_XDECREF(tempos);
    Py_XDECREF(meters);
    PyBuffer_Release(&view);
    if (state == NO_MEMORY) {
        Py_XDECREF(result);
        return PyErr_Occurred() ? NULL : PyErr_NoMemory();
    }
    if (state == UNPROVEN) Py_RETURN_NONE;
    return result;
}


/* ------------------------------------------------------------------ notes_from_ticks, clean_notes */

/* A C-contiguous int64 buffer of rows of `width` columns; -1 (an exception set) if it is not one. */
static int int64_rows(PyObject *arg, Py_buffer *view, int width) {
    if (PyObject_GetBuffer(arg, view, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0) return -1;
    const char *f = view->format;
    if (view->itemsize != 8 || !f || !(strcmp(f, "q") == 0 || strcmp(f, "<q") == 0 || strcmp(f, "=q") == 0 ||
                                       strcmp(f, "l") == 0 || strcmp(f, "<l") == 0 || strcmp(f, "=l") == 0) ||
        view->len % (8 * width) != 0) {
        PyBuffer_Release(view);
        PyErr_Format(PyExc_TypeError, "expected a C-contiguous int64 array of %d columns", width);
        return -1;
    }
    return 0;
}

static PyObject *notes_from_ticks(PyObject *self, PyObject *args) {
    PyObject *arg;
    double scale;
    long long resolution;
    if (!PyArg_ParseTuple(args, "OdL", &arg, &scale, &resolution)) return NULL;
    if (resolution <= 0) Py_RETURN_NONE;
    Py_buffer view;
    if (int64_rows(arg, &view, 4) < 0) return NULL;
    Py_ssize_t n = view.len / 32;
    PyObject *out = PyByteArray_FromStringAndSize(NULL, n * 40);
    if (!out) {
        PyBuffer_Release(&view);
        return NULL;
    }
    const int64_t *raw = view.buf;
    int64_t *notes = (int64_t *)PyByteArray_AS_STRING(out);
    for (Py_ssize_t i = 0; i < n; i++, raw += 4, notes += 5) {
        /* as numpy: int64 -> float64, times scale, rint (half to even), -> int64 */
        double onset_ticks = rint((double)raw[0] * scale);
        double end_ticks = rint((double)(int64_t)((uint64_t)raw[0] + (uint64_t)raw[2]) * scale);
        if (!(fabs(onset_ticks) < 0x1p52 && fabs(end_ticks) < 0x1p52)) {   /* far beyond any piece: let numpy say */
            Py_DECREF(out);
            PyBuffer_Release(&view);
            Py_RETURN_NONE;
        }
        int64_t onset = (int64_t)onset_ticks, end = (int64_t)end_ticks;
        int64_t beat = onset / resolution, position = onset % resolution;
        if (position < 0) {   /* floor division, as numpy's // and % */
            beat -= 1;
            position += resolution;
        }
        notes[0] = beat;
        notes[1] = position;
        notes[2] = raw[1];
        notes[3] = end - onset > 1 ? end - onset : 1;
        notes[4] = raw[3];
    }
    PyBuffer_Release(&view);
    return out;
}

/* Sort `n` keys (< 2**bits) in place, least significant byte first; `tmp` holds n more. */
static void radix_sort(uint64_t *keys, uint64_t *tmp, Py_ssize_t n, int bits) {
    int passes = (bits + 7) / 8;
    static Py_ssize_t count[8][256];
    memset(count, 0, sizeof(count[0]) * passes);
    for (Py_ssize_t i = 0; i < n; i++)
        for (int p = 0; p < passes; p++) count[p][(keys[i] >> (8 * p)) & 0xFF] += 1;
    uint64_t *from = keys, *to = tmp;
    for (int p = 0; p < passes; p++) {
        int shift = 8 * p;
        if (n == 0 || count[p][(from[0] >> shift) & 0xFF] == n) continue;   /* one digit for all: nothing to do */
        Py_ssize_t at = 0;
        for (int d = 0; d < 256; d++) {
            Py_ssize_t c = count[p][d];
            count[p][d] = at;
            at += c;
        }
        for (Py_ssize_t i = 0; i < n; i++) to[count[p][(from[i] >> shift) & 0xFF]++] = from[i];
        uint64_t *swap = from;
        from = to;
        to = swap;
    }
    if (from != keys) memcpy(keys, from, (size_t)n * sizeof(uint64_t));
}

static int bit_length(uint64_t v) {
    int bits = 0;
    while (v) {
        bits += 1;
        v >>= 1;
    }
    return bits;
}

static PyObject *clean_notes(PyObject *self, PyObject *arg) {
    Py_buffer view;
    if (int64_rows(arg, &view, 5) < 0) return NULL;
    Py_ssize_t n = view.len / 40;
    const int64_t *notes = view.buf;
    if (n == 0) {
        PyBuffer_Release(&view);
        return PyByteArray_FromStringAndSize(NULL, 0);
    }
    int64_t low[5], high[5];
    int w[5], total = 0;
    for (int c = 0; c < 5; c++) low[c] = high[c] = notes[c];
    for (Py_ssize_t i = 1; i < n; i++)
        for (int c = 0; c < 5; c++) {
            int64_t v = notes[5 * i + c];
            if (v < low[c]) low[c] = v;
            if (v > high[c]) high[c] = v;
        }
    for (int c = 0; c < 5; c++) {
        w[c] = bit_length((uint64_t)high[c] - (uint64_t)low[c]);
        total += w[c];
    }
    if (total > 62) {   /* the Python code sorts by columns */
        PyBuffer_Release(&view);
        Py_RETURN_NONE;
    }
    enum { BEAT, POSITION, PITCH, DURATION, PROGRAM };
    uint64_t *keys = malloc((size_t)n * 2 * sizeof(uint64_t));
    if (!keys) {
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    uint64_t *tmp = keys + n, span_duration = ((uint64_t)1 << w[DURATION]) - 1;
    for (Py_ssize_t i = 0; i < n; i++) {   /* (onset, pitch, program), longest first */
        const int64_t *row = notes + 5 * i;
        uint64_t onset_pitch = (((uint64_t)(row[BEAT] - low[BEAT]) << w[POSITION] | (uint64_t)(row[POSITION] - low[POSITION]))
                                << w[PITCH]) | (uint64_t)(row[PITCH] - low[PITCH]);
        keys[i] = ((onset_pitch << w[PROGRAM] | (uint64_t)(row[PROGRAM] - low[PROGRAM])) << w[DURATION]) |
                  (span_duration - (uint64_t)(row[DURATION] - low[DURATION]));
    }
    PyBuffer_Release(&view);
    radix_sort(keys, tmp, n, total);
    Py_ssize_t m = 0;   /* the first (longest) of each (onset, pitch, program), re-keyed by (onset, pitch, duration, program) */
    uint64_t program_mask = ((uint64_t)1 << w[PROGRAM]) - 1;
    for (Py_ssize_t i = 0; i < n; i++) {
        uint64_t group = keys[i] >> w[DURATION];
        if (i > 0 && group == keys[i - 1] >> w[DURATION]) continue;
        uint64_t duration = span_duration - (keys[i] & span_duration);
        tmp[m++] = ((group >> w[PROGRAM]) << w[DURATION] | duration) << w[PROGRAM] | (group & program_mask);
    }
    radix_sort(tmp, keys, m, total);
    PyObject *out = PyByteArray_FromStringAndSize(NULL, m * 40);
    if (out) {
        int64_t *rows = (int64_t *)PyByteArray_AS_STRING(out);
        static const int order[5] = {PROGRAM, DURATION, PITCH, POSITION, BEAT};   /* lowest bits first */
        for (Py_ssize_t i = 0; i < m; i++) {
            uint64_t key = tmp[i];
            for (int j = 0; j < 5; j++) {
                int c = order[j];
                rows[5 * i + c] = (int64_t)(key & (((uint64_t)1 << w[c]) - 1)) + low[c];
                key >>= w[c];
            }
        }
    }
    free(keys);
    return out;
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_O,
     "scan(data) -> None or (ticks_per_beat, notes, tempos, time_signatures): see the module's source."},
    {"notes_from_ticks", notes_from_ticks, METH_VARARGS,
     "notes_from_ticks(raw, scale, resolution) -> bytearray of int64 rows, or None: see the module's source."},
    {"clean_notes", clean_notes, METH_O,
     "clean_notes(notes) -> bytearray of int64 rows, or None: see the module's source."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "mmt._native",
    "C versions of MIDI reading (scan) and of notes_from_ticks and clean_notes; see the source.", -1,
    methods,
};

PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&module); }

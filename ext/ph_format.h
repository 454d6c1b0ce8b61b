/*
 * ph_format.h -- serialization of flow records: ECS NDJSON, Zeek JSON, Zeek TSV.
 *
 * Output goes to a growable byte buffer owned by the caller. Numbers and
 * addresses are formatted by hand (no printf on the hot path).
 */
#ifndef PH_FORMAT_H
#define PH_FORMAT_H

#include "ph_types.h"
#include "ph_record.h"

typedef struct ph_buf {
    char *data;
    size_t len, cap;
} ph_buf;

int ph_buf_reserve(ph_buf *b, size_t extra);   /* 0 ok, -1 out of memory */
void ph_buf_free(ph_buf *b);

#define PH_FORMAT_ECS       0
#define PH_FORMAT_ZEEK_JSON 1
#define PH_FORMAT_ZEEK_TSV  2

typedef struct ph_format_opts {
    const char *observer_name;     /* observer.hostname in ECS (may be NULL) */
    const char *dataset;           /* event.dataset, default "pyhunt.flow" */
} ph_format_opts;

/* Append one line per record (terminated by '\n'). Returns 0 or -1 (out of memory). */
int ph_format_records(ph_buf *out, int format, const ph_flow_rec *recs, size_t n,
                      const ph_format_opts *opts);
/* Zeek TSV header lines (#separator ... #types) and the #close line. */
int ph_format_tsv_header(ph_buf *out, const char *open_time);
int ph_format_tsv_footer(ph_buf *out, const char *close_time);
/* The uid / Elasticsearch _id of a flow id: "C" + base62, NUL-terminated, <= 16 bytes. */
void ph_format_uid(uint64_t flow_id, char out[16]);

#endif /* PH_FORMAT_H */

/* SPDX-License-Identifier: MIT */
/*
 * A Zuora client on the event loop, shared by the daemon and the operator
 * commands: it owns the OAuth token (fetched lazily, renewed when it expires
 * within 5 minutes or once after a 401), decorates every request (bearer
 * token, a fresh Zuora-Track-Id, Zuora-Entity-Ids, Accept-Encoding), and
 * guarantees that credentials only ever go to base_url's scheme, host and
 * port. It does not retry beyond that one re-authentication: the caller
 * decides from the verdict.
 */
#pragma once

#include <systemd/sd-event.h>

#include "config.h"
#include "http.h"
#include "secret.h"
#include "zclock.h"
#include "zuora.h"

typedef struct Client Client;
typedef struct ClientCall ClientCall;

typedef struct ClientResult {
        ZuoraVerdict verdict; /* classified with body_ok = true; callers that parse
                               * the body and fail treat it as RETRY */
        const HttpResponse *response;
        const char *track_id;  /* of the (last) request sent */
        bool token_failed;     /* no request was sent: the token could not be had */
        char *zuora_text;      /* Zuora's reason text or a transport error, or NULL */
        int64_t sent_usec;     /* CLOCK_REALTIME: when the (last) request left ... */
        int64_t received_usec; /* ... and when its answer came */
} ClientResult;

typedef void (*ClientDoneFunc)(const ClientResult *result, void *userdata);

/* What the operator is told about RESULT (in zuora_answer_text()'s words);
 * MALFORMED: a 2xx whose body is not what was asked. */
ZuoraAnswer client_result_answer(const ClientResult *result, bool malformed);

/* Takes ownership of SECRET. C must outlive the client or be replaced
 * through client_reconfigure(). */
int client_new(sd_event *event, const Config *c, Secret *secret, Client **ret);
Client *client_free(Client *cl);

/* Where the client keeps what it measures of Zuora's clock (the Date of
 * every answer): C, which outlives the client (NULL: a clock of its own). */
void client_set_clock(Client *cl, ZuoraClock *c);

/* What is known of Zuora's clock. */
const ZuoraClock *client_clock(const Client *cl);

/* Another of Zuora's stamps (a job's createTime), made between SENT_USEC
 * and RECEIVED_USEC of ours. */
void client_observe_clock(Client *cl, int64_t stamp_sec, int64_t sent_usec, int64_t received_usec);

/* New config and secret (ownership taken): drops the cached token. */
int client_reconfigure(Client *cl, const Config *c, Secret *secret);

/* What to send. The strings are copied. */
typedef struct ClientRequest {
        HttpMethod method;
        const char *url;             /* absolute, on base_url's origin */
        const char *body;            /* JSON, or NULL */
        const char *idempotency_key; /* or NULL */
        const char *track_id;        /* the first attempt's Zuora-Track-Id, or NULL: a fresh one */
} ClientRequest;

#define CLIENT_GET(u) (&(ClientRequest) { .method = HTTP_METHOD_GET, .url = (u) })

/* Sends REQ; DONE runs with the answer. *ret (may be NULL) is valid until
 * DONE runs or client_cancel(). -EPERM for a URL on another origin. */
int client_call(Client *cl, const ClientRequest *req, ClientDoneFunc done, void *userdata, ClientCall **ret);

void client_cancel(ClientCall *call);

/* The URL of ENDPOINT for test environment ENV_ID and job JOB_ID, on base_url. */
char *client_url(const Client *cl, ZuoraEndpoint endpoint, const char *env_id, const char *job_id);

/* Resolves a Location header (absolute or relative) against base_url.
 * -EPERM when it points to another scheme, host or port. */
int client_resolve(const Client *cl, const char *location, char **ret_url);

/* True when URL is on base_url's scheme, host and port. */
bool client_url_is_ours(const Client *cl, const char *url);

size_t client_pending(const Client *cl);

/* SPDX-License-Identifier: MIT */
/*
 * The one emitter behind report.h's event functions, for them and for the
 * tests of the transport (console lines, journal fields): the rest of the
 * daemon reports only through one function per event kind.
 */
#pragma once

#include "report.h"

/* Emits one event: MESSAGE_ID is a 32-hex-digit id from
 * refreshd-messages.h, PRIORITY a syslog level (LOG_INFO...). The message
 * must read well on its own. Console: "2026-12-06T03:00:00.004Z info
 * MESSAGE REFRESHD_ENVIRONMENT=uat ..." (logfmt: a value with spaces, '"'
 * or '=' is quoted with '"' and '\' escaped). */
void report_event(const char *message_id, int priority, const ReportFields *f, const char *format, ...)
        __attribute__((format(printf, 4, 5)));

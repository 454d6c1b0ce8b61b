/* ph_glue.h -- small helpers for the Cython binding (struct members Cython cannot name). */
#ifndef PH_GLUE_H
#define PH_GLUE_H

#include "ph_flow.h"

#define PH_MAX_LOCAL_NETS 64

static inline int ph_glue_set_local_net(ph_flow_cfg *cfg, uint32_t i, const uint8_t *addr,
                                        uint8_t ipver, uint8_t prefix)
{
    if (i >= PH_MAX_LOCAL_NETS)
        return -1;
    memcpy(cfg->local_nets[i].addr, addr, 16);
    cfg->local_nets[i].ipver = ipver;
    cfg->local_nets[i].prefix = prefix;
    return 0;
}

#endif /* PH_GLUE_H */

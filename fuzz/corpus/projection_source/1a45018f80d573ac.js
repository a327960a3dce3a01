options({ resultStreamName: 'totals', $includeLinks: true, processingLag: 500, biState: true });
         fromAll().when({})